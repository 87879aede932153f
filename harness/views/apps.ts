import { AppshotError, EXIT } from '../../ts/errors.js';
import { type TableDb, getApp } from '../../ts/tabledb.js';

/** --aid of an application the home has no record of: said, exit 1 (an
 * empty listing would read as "it has nothing"). */
export function requireApp(t: TableDb, aid: string): void {
  if (!getApp(t, aid)) throw new AppshotError(`no application '${aid}' in ${t.home}; appshot tables --apps lists them`, EXIT.failure);
}
