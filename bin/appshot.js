#!/usr/bin/env node
// The appshot command by its earlier entry: bin/appshot.cjs is the one to run
// (see there); this one costs Node's ES module loader on top.
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./appshot.cjs').main();
