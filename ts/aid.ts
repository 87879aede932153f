import { AppshotError, EXIT } from './errors.js';
import { TEMPLATE_AID_PREFIX } from './home.js';
import * as S from '../tables/schema.js';

/** Refuses an AID the tables could not hold, before anything is opened. */
export function checkAid(aid: string): void {
  if (!S.aidValid(aid))
    throw new AppshotError(
      `'${aid}' is not a valid application ID: use 1 to 63 letters, digits, '.', '_' or '-', not starting with '.' or '-'`,
      EXIT.usage,
    );
}

/** Refuses an AID that an application cannot take: an invalid one, or one
 * in appshot's own namespace of template entries, which own the templates'
 * shared segments (an application under that name would end them). */
export function checkAppAid(aid: string): void {
  checkAid(aid);
  if (aid.startsWith(TEMPLATE_AID_PREFIX))
    throw new AppshotError(
      `'${aid}' cannot name an application: AIDs starting with '${TEMPLATE_AID_PREFIX}' are appshot's entries for templates (that one would be template '${aid.slice(TEMPLATE_AID_PREFIX.length)}', whose shared segments it would take over); choose an AID that does not start with '${TEMPLATE_AID_PREFIX}'`,
      EXIT.usage,
    );
}
