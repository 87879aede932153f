import * as S from '../../tables/schema.js';

/** What `appshot tables` filters and sorts by: here, apart from the
 * inspector, so the command line knows them without loading it. */
export const TYPE_FILTERS = ['sem', 'shm', 'msg', 'pid', 'port', 'publish', 'key', ...S.KEY_TYPES, 'path'] as const;
export const STATE_FILTERS = Object.keys(S.APP_STATE) as S.AppState[];
export const SORT_FIELDS = ['aid', 'type', 'virtual', 'system', 'created'] as const;
export type SortField = (typeof SORT_FIELDS)[number];
