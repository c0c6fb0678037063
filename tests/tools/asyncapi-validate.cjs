// Validates an AsyncAPI document with the official parser (@asyncapi/parser, from npm, installed
// by scripts/test.sh into the folder named by argv[2]). Usage: node asyncapi-validate.cjs DIR FILE
// Exit 0 when the document parses without errors; every diagnostic is printed.
const { createRequire } = require('module');
const fs = require('fs');
const path = require('path');
const req = createRequire(path.join(path.resolve(process.argv[2]), 'package.json'));
const { Parser } = req('@asyncapi/parser');
(async () => {
  const { document, diagnostics } = await new Parser().parse(fs.readFileSync(process.argv[3], 'utf8'));
  // Severity 0 = error, 1 = warning, 2 = information, 3 = hint.
  for (const d of diagnostics) console.log(d.severity, d.code, d.message, JSON.stringify(d.path));
  const errors = diagnostics.filter((d) => d.severity === 0).length;
  console.log(document && errors === 0 ? 'VALID' : 'INVALID');
  process.exit(document && errors === 0 ? 0 : 1);
})();
