#!/usr/bin/env node
// bin/appshot set NODE_EXTRA_CA_CERTS aside for Node's start (see there): the
// programs appshot starts see the environment they were given.
const aside = process.env.APPSHOT_NODE_EXTRA_CA_CERTS;
if (aside !== undefined) {
  process.env.NODE_EXTRA_CA_CERTS = aside;
  delete process.env.APPSHOT_NODE_EXTRA_CA_CERTS;
}
await import('../dist/harness/cli.js');
