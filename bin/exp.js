const aside = process.env.APPSHOT_NODE_EXTRA_CA_CERTS;
if (aside !== undefined) { process.env.NODE_EXTRA_CA_CERTS = aside; delete process.env.APPSHOT_NODE_EXTRA_CA_CERTS; }
await import(process.env.FP_ENTRY);
