import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { AppshotError, EXIT, errnoText } from './errors.js';

/**
 * Where the tables live: $APPSHOT_HOME, else $XDG_STATE_HOME/appshot, else
 * ~/.local/state/appshot. Kept per user; the directory is owner-only.
 */
export function resolveHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.APPSHOT_HOME) return resolve(env.APPSHOT_HOME);
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'appshot');
}

/** mkdir -p, one level at a time: Node's recursive mkdirSync spins forever
 * on some paths under /proc. */
function makeDirs(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) makeDirs(parent);
  mkdirSync(dir, { mode: 0o700 });
}

/** Makes sure home exists and is a writable directory, creating it 0700. */
export function ensureHome(home: string): void {
  try {
    makeDirs(home);
  } catch (err) {
    throw new AppshotError(
      `cannot create APPSHOT_HOME ${home}: ${errnoText(err)}; set APPSHOT_HOME to a directory you can write`,
      EXIT.home,
    );
  }
  if (!statSync(home).isDirectory())
    throw new AppshotError(`APPSHOT_HOME ${home} is not a directory; set APPSHOT_HOME to a directory you can write`, EXIT.home);
  try {
    accessSync(home, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new AppshotError(
      `APPSHOT_HOME ${home} is not writable: ${errnoText(err)}; set APPSHOT_HOME to a directory you can write`,
      EXIT.home,
    );
  }
}

/** Templates live in HOME/templates/NAME.json; each one's entry in the
 * tables (the owner of its shared segments) is template.NAME. */
export const TEMPLATE_AID_PREFIX = 'template.';

export function templatesDir(home: string): string {
  return join(home, 'templates');
}

export function templateFile(home: string, name: string): string {
  return join(templatesDir(home), `${name}.json`);
}

/** Whether a template entry of the tables still has its file: one without
 * was left by a template create that died part way. */
export function templateFileExists(home: string, aid: string): boolean {
  return aid.startsWith(TEMPLATE_AID_PREFIX) && existsSync(templateFile(home, aid.slice(TEMPLATE_AID_PREFIX.length)));
}
