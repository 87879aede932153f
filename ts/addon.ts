import { createRequire } from 'node:module';
import { ADDON_PATH } from './paths.js';

/** The translation core's Node face (native/addon/addon.cc). */
export interface Addon {
  fwdKey(aid: string, type: number, vrid: number): Buffer;
  fwdVal(v: { srid: number; vkey: number; skey: number; creator: number; createdMs: number }): Buffer;
  revKey(node: number, type: number, srid: number): Buffer;
  revVal(vrid: number, aid: string): Buffer;
  allocKey(aid: string, type: number): Buffer;
  appVal(v: {
    schema: number;
    state: number;
    flags: number;
    harnessSpid: number;
    harnessStart: number;
    createdMs: number;
    endedMs: number;
  }): Buffer;
  aidValid(aid: string): boolean;
  /** Call inside a write transaction; returns what it removed, or null. */
  recoverInflight(home: string, isMapped: (type: number, srid: number) => boolean): string | null;
}

let loaded: Addon | undefined;
export function addon(): Addon {
  loaded ??= createRequire(import.meta.url)(ADDON_PATH) as Addon;
  return loaded;
}
