import { spawnSync } from 'node:child_process';
import { mkdtempSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMAND_PATH } from '../ts/paths.js';
import { makeHome, testRoot } from './helpers.js';

// bin/appshot, the command npm puts on PATH, starts appshot's Node without
// NODE_EXTRA_CA_CERTS (Node parses those certificates as it starts); the
// programs it runs must still get the environment they were given.
const SHOW = 'echo "[${NODE_EXTRA_CA_CERTS-unset}] [${APPSHOT_NODE_EXTRA_CA_CERTS-unset}]"';

function launch(home: string, env: Record<string, string | undefined>, via = COMMAND_PATH) {
  const full: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home, ...env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete full[k];
  delete full.LD_PRELOAD;
  delete full.APPSHOT_AID;
  return spawnSync(via, ['run', '--', 'sh', '-c', SHOW], { env: full, encoding: 'utf8', timeout: 30_000 });
}

describe('the appshot command hands NODE_EXTRA_CA_CERTS on to the program unchanged', () => {
  const home = makeHome();
  it.each([
    ['set', '/etc/ssl/certs/ca-certificates.crt', '[/etc/ssl/certs/ca-certificates.crt] [unset]'],
    ['set and empty', '', '[] [unset]'],
    ['unset', undefined, '[unset] [unset]'],
  ])('%s', (_what, value, seen) => {
    const r = launch(home, { NODE_EXTRA_CA_CERTS: value, APPSHOT_NODE_EXTRA_CA_CERTS: undefined });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(seen);
  });

  it('through a symbolic link, as npm link installs it', () => {
    const link = join(mkdtempSync(join(testRoot(), 'bin-')), 'appshot');
    symlinkSync(COMMAND_PATH, link);
    const r = launch(home, { NODE_EXTRA_CA_CERTS: '/x.pem' }, link);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('[/x.pem] [unset]');
  });
});
