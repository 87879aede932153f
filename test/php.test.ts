import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';
import { spawnSync } from 'node:child_process';

// PHP loads its extensions with dlopen(RTLD_DEEPBIND): sysvsem.so, sysvshm.so
// and sysvmsg.so bind straight to libc, past the shim's wrappers (issue 16
// §1). The trap translates their calls in libc. Debian's php-cli, installed
// by scripts/system-deps.sh.
const PHP = '/usr/bin/php';

const freshKey = () => 0x5a000000 + ((process.pid * 4099 + Math.floor(Math.random() * 0xfffff)) & 0xffffff);

/** Semaphore, shared memory and queue on one fixed key, what each shows,
 * and how many objects of that key `ipcs` lists. With `keep`, the objects
 * are left for the application's end to remove, and the script waits for
 * the file named by `hold` first. */
function script(key: number, opts: { keep?: boolean; hold?: string; tag?: string } = {}): string {
  const tag = opts.tag ?? 'x';
  return `
$k = ${key};
$s = sem_get($k, 1, 0600, true);
echo "acquire ", var_export(sem_acquire($s, true), true), "\\n";
$m = shm_attach($k, 4096, 0600);
shm_put_var($m, 1, "${tag}");
echo "shm ", shm_get_var($m, 1), "\\n";
$q = msg_get_queue($k, 0600);
msg_send($q, 2, "${tag}");
$st = msg_stat_queue($q);
echo "qnum ", $st["msg_qnum"], " lspid ", $st["msg_lspid"] == getmypid() ? "self" : "other", "\\n";
echo "ipcs ", trim(shell_exec("ipcs | grep -c 0x" . sprintf("%08x", $k))), "\\n";
${opts.hold ? `echo "ready\\n"; while (!file_exists("${opts.hold}")) usleep(10000);` : ''}
$st = msg_stat_queue($q);
echo "qnum ", $st["msg_qnum"], "\\n";
msg_receive($q, 0, $type, 100, $msg);
echo "received ", $type, " ", $msg, "\\n";
echo "release ", var_export(sem_release($s), true), "\\n";
${opts.keep ? '' : 'sem_remove($s); shm_remove($m); msg_remove_queue($q);'}
`;
}

function native(code: string) {
  const r = spawnSync(PHP, ['-r', code], { encoding: 'utf8', env: { ...process.env, APPSHOT_AID: '', LD_PRELOAD: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.each([
  ['identity first', [] as string[]],
  ['remapped', ['--no-identity']],
])("PHP's sysvsem, sysvshm and sysvmsg, %s", (mode, flags) => {
  it('see what they see natively, and ipcs inside the application lists their objects', () => {
    const key = freshKey();
    const n = native(script(key));
    expect(n.stdout).toBe('acquire true\nshm x\nqnum 1 lspid self\nipcs 3\nqnum 1\nreceived 2 x\nrelease true\n');
    const r = appshot(makeHome(), ['run', ...flags, '--', PHP, '-r', script(key)]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(n.stdout);
  });

  it('leave nothing on the host once the application has ended', async () => {
    const home = makeHome();
    const key = freshKey();
    const hold = join(home, 'go');
    const app = appshotAsync(home, ['run', '--aid', 'php', ...flags, '--', PHP, '-r', script(key, { keep: true, hold })]);
    await waitFor(app.out, /^ready$/m);
    const rows = tablesJson(home, ['--aid', 'php']).filter((row) => row.type === 'sem' || row.type === 'shm' || row.type === 'msg');
    expect(rows.map((row) => row.type).sort()).toEqual(['msg', 'sem', 'shm']);
    for (const row of rows) expect(kernelObjects(row.type as 'sem' | 'shm' | 'msg').has(row.system)).toBe(true);
    writeFileSync(hold, '');
    const done = await app.done;
    expect(done.code).toBe(0);
    for (const row of rows) expect(kernelObjects(row.type as 'sem' | 'shm' | 'msg').has(row.system)).toBe(false);
    for (const type of ['sem', 'shm', 'msg'] as const) expect([...kernelObjects(type).values()].some((o) => o.key === key)).toBe(false);
    expect(existsSync(hold)).toBe(true);
  });
});

it('two remapped applications on one key stay apart', async () => {
  const key = freshKey();
  const homeA = makeHome();
  const hold = join(homeA, 'go');
  const a = appshotAsync(homeA, ['run', '--no-identity', '--', PHP, '-r', script(key, { hold, tag: 'A' })]);
  await waitFor(a.out, /^ready$/m);
  // A holds its semaphore and has a message queued; B, on the same key,
  // gets its own semaphore (free), segment and queue.
  const b = appshot(makeHome(), ['run', '--no-identity', '--', PHP, '-r', script(key, { tag: 'B' })]);
  expect(b.stdout).toBe('acquire true\nshm B\nqnum 1 lspid self\nipcs 3\nqnum 1\nreceived 2 B\nrelease true\n');
  writeFileSync(hold, '');
  const done = await a.done;
  expect(done.stdout).toBe('acquire true\nshm A\nqnum 1 lspid self\nipcs 3\nready\nqnum 1\nreceived 2 A\nrelease true\n');
});
