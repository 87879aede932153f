import { createRequire } from 'node:module';
import { ADDON_PATH } from './paths.js';
import type * as S from '../tables/schema.js';

/** The translation core's Node face (native/addon/addon.cc). */
export interface Addon {
  fwdKey(aid: string, type: number, vrid: number): Buffer;
  fwdVal(v: S.FwdVal): Buffer;
  fwdValRemoved(b: Buffer): boolean;
  procKey(spid: number): Buffer;
  procVal(startTicks: number, aid: string): Buffer;
  revKey(node: number, type: number, srid: number): Buffer;
  revVal(vrid: number, aid: string): Buffer;
  allocKey(aid: string, type: number): Buffer;
  /** The fixed part of an app value (the command is TypeScript's to add). */
  appVal(v: Omit<S.AppVal, 'command'>): Buffer;
  portId(proto: number, port: number): number;
  aidValid(aid: string): boolean;
  /** Call inside a write transaction; returns what it removed, or null. */
  recoverInflight(home: string, isMapped: (type: number, srid: number) => boolean): string | null;
}

let loaded: Addon | undefined;
export function addon(): Addon {
  loaded ??= createRequire(import.meta.url)(ADDON_PATH) as Addon;
  return loaded;
}
