// The appshot command as it runs: harness/cli.ts and everything it imports
// (ts/, tables/, commander) bundled into one CommonJS file, dist/appshot.cjs,
// and a V8 code cache of it, dist/appshot.cjs.cache, which bin/appshot.cjs
// loads. Why: Node 20 has no compile cache; loading ~20 ES modules and
// commander's 7 files one by one, each compiled at every start, was most of
// the first page of `appshot tables` (README "Performance").
//
// Run by `npm run build:ts` after tsc (which type-checks, and still emits
// dist/ for the bench and the scripts appshot starts by path, such as
// dist/ts/snapguard.js).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist', 'appshot.cjs');
const cache = `${bundle}.cache`;
const loader = join(root, 'bin', 'appshot.cjs');

// commander requires child_process when it loads, for subcommands that are
// programs of their own, which appshot has none of. Loading it brings net,
// dgram and the streams with it: 7 ms of every command here, a third of what
// the first page of `appshot tables` spends past Node's own start. In the
// bundle commander gets it on first use instead.
const lazyChildProcess = {
  name: 'lazy-child-process',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]/.test(args.importer) ? { path: 'child_process', namespace: 'lazy-builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, () => ({
      contents: "module.exports = new Proxy({}, { get: (_, name) => require('node:child_process')[name] });",
      loader: 'js',
    }));
  },
};

const result = await build({
  entryPoints: [join(root, 'harness', 'cli.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: 'linked',
  // Packages with native addons, found beside their own files, and those
  // only some commands load: required from node_modules at run time.
  external: ['lmdb', 'koffi', 'cli-table3', 'cli-progress'],
  plugins: [lazyChildProcess],
  // ts/paths.ts finds the package root from its own file, and modules
  // require packages relative to it: in the bundle, that file is the bundle.
  banner: { js: 'var __importMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { 'import.meta.url': '__importMetaUrl' },
  logLevel: 'warning',
  metafile: true,
  write: false, // written below, whole or not at all
});

// Code compiled from a script (bin/appshot.cjs) has no import(): with a code
// cache, Node 20 loses the callback it would need (and without one, wants
// --experimental-vm-modules). esbuild turns import() of our own modules into
// require; one of a package or a Node module would fail only when it ran.
const dynamic = Object.values(result.metafile.inputs).flatMap((input) => input.imports.filter((i) => i.kind === 'dynamic-import' && i.external).map((i) => i.path));
if (dynamic.length) {
  process.stderr.write(`appshot build: the bundle cannot import() ${dynamic.join(', ')}: import it statically, or require it\n`);
  process.exit(1);
}

// V8 checks a code cache against its source's length only, so a cache left
// beside another bundle of the same length would run that bundle's code: the
// bundle ends with an ID of its contents, and the loader uses a cache only
// if it begins with the same ID.
const code = result.outputFiles.find((f) => f.path === bundle).contents;
const id = createHash('sha256').update(code).digest('hex').slice(0, 32);
const contents = Buffer.concat([code, Buffer.from(`//# appshot-bundle-id ${id}\n`)]);

/** Replaces a file at once: a command starting meanwhile (another `npm test`
 * builds while this one's tests run) reads the old file or the new, never
 * half of one. */
function replace(file, data) {
  writeFileSync(`${file}.${process.pid}`, data);
  renameSync(`${file}.${process.pid}`, file);
}

/** Whether the cache on disk was made for this bundle. */
function cacheMade() {
  try {
    return readFileSync(cache).subarray(0, id.length + 1).toString('latin1') === `${id}\n`;
  } catch {
    return false;
  }
}

if (existsSync(bundle) && readFileSync(bundle).equals(contents) && cacheMade()) process.exit(0); // nothing changed

mkdirSync(dirname(bundle), { recursive: true });
for (const file of result.outputFiles) if (file.path !== bundle) replace(file.path, file.contents);
rmSync(cache, { force: true });
replace(bundle, contents);

// The code cache: V8 keeps the code of every function compiled so far, so
// the cache is written as a real first page ends (in an empty home made for
// it), and holds what `appshot tables` compiles, not only the top level.
const home = mkdtempSync(join(tmpdir(), 'appshot-codecache-'));
try {
  const run = spawnSync(process.execPath, [loader, 'tables'], {
    env: { ...process.env, APPSHOT_HOME: home, APPSHOT_BUILD_CODE_CACHE: '1' },
    encoding: 'utf8',
  });
  if (run.status !== 0 || !cacheMade()) {
    // The command runs without a cache, only slower to start: say so, go on.
    rmSync(cache, { force: true });
    process.stderr.write(`appshot build: no code cache (appshot tables exited ${run.status ?? run.signal}: ${run.stderr.trim()}); the command will start slower\n`);
  }
} finally {
  rmSync(home, { recursive: true, force: true });
}
