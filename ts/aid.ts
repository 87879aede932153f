import { AppshotError, EXIT } from './errors.js';
import * as S from '../tables/schema.js';

/** Refuses an AID the tables could not hold, before anything is opened. */
export function checkAid(aid: string): void {
  if (!S.aidValid(aid))
    throw new AppshotError(
      `'${aid}' is not a valid application ID: use 1 to 63 letters, digits, '.', '_' or '-', not starting with '.' or '-'`,
      EXIT.usage,
    );
}
