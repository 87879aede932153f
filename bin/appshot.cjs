#!/usr/bin/env node
'use strict';
// The appshot command's Node: puts NODE_EXTRA_CA_CERTS back, then runs the
// bundle (dist/appshot.cjs, made by scripts/bundle.mjs) compiled with its V8
// code cache. CommonJS on purpose: an ES module entry costs Node's ES module
// loader, 6-8 ms of every command here.
const { readFileSync, renameSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { createRequire } = require('node:module');

const BUNDLE = join(__dirname, '..', 'dist', 'appshot.cjs');
const CACHE = `${BUNDLE}.cache`;

/** bin/appshot set NODE_EXTRA_CA_CERTS aside for Node's start (see there):
 * the programs appshot starts see the environment they were given. */
function restoreEnvironment() {
  const aside = process.env.APPSHOT_NODE_EXTRA_CA_CERTS;
  if (aside !== undefined) {
    process.env.NODE_EXTRA_CA_CERTS = aside;
    delete process.env.APPSHOT_NODE_EXTRA_CA_CERTS;
  }
}

/** The ID scripts/bundle.mjs ends the bundle with: of its contents. */
function bundleId(source) {
  return /\/\/# appshot-bundle-id ([0-9a-f]+)\n$/.exec(source.slice(-100))?.[1];
}

/** The code cache, if it was made for this bundle: V8 checks a cache only
 * against its source's length, so the file begins with the bundle's ID. */
function codeCache(id) {
  let cache;
  try {
    cache = readFileSync(CACHE);
  } catch {
    return undefined; // none: compiled from the source alone
  }
  const header = Buffer.from(`${id}\n`);
  return id && cache.subarray(0, header.length).equals(header) ? cache.subarray(header.length) : undefined;
}

/** The bundle compiled as Node compiles a CommonJS module, with the cache. */
function compile() {
  let source;
  try {
    // latin1: the bundle is ASCII (esbuild escapes anything else), read so
    // without a UTF-8 decode, 2-3 ms of every command here.
    source = readFileSync(BUNDLE, 'latin1');
  } catch (err) {
    process.stderr.write(`appshot: ${BUNDLE} cannot be read (${err.code ?? err.message}): build appshot with npm run build (npm install does it)\n`);
    process.exit(1); // EXIT.failure (ts/errors.ts)
  }
  const id = bundleId(source);
  const cachedData = codeCache(id);
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: BUNDLE, cachedData });
  return { script, id, cacheUsed: cachedData !== undefined && !script.cachedDataRejected };
}

/** Runs appshot with process.argv. */
function main() {
  restoreEnvironment();
  const { script, id } = compile();
  // scripts/bundle.mjs: the cache holds what a whole run compiled.
  if (process.env.APPSHOT_BUILD_CODE_CACHE === '1' && id) {
    delete process.env.APPSHOT_BUILD_CODE_CACHE;
    process.once('exit', () => {
      // Whole or not at all: a command starting meanwhile may read it.
      writeFileSync(`${CACHE}.${process.pid}`, Buffer.concat([Buffer.from(`${id}\n`), script.createCachedData()]));
      renameSync(`${CACHE}.${process.pid}`, CACHE);
    });
  }
  const bundleModule = { exports: {}, filename: BUNDLE };
  script.runInThisContext()(bundleModule.exports, createRequire(BUNDLE), bundleModule, BUNDLE, join(BUNDLE, '..'));
}

module.exports = { main, compile };
if (require.main === module) main();
