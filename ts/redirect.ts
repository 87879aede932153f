// Placeholder until the path-redirect branch lands (its version replaces this file).
import type { Tables } from './tables.js';
export interface Redirect {
  from: string;
  to: string;
}
export function normalizePath(p: string): string {
  return p;
}
export function putRedirects(_t: Tables, _aid: string, _list: Redirect[]): void {}
export function redirectsOf(_t: Tables, _aid: string): Redirect[] {
  return [];
}
