// Validates herald's element templates with Camunda Modeler's own validator
// (@bpmn-io/element-templates-validator, the Camunda 7 schema), then checks what the schema
// cannot: every pattern compiles, and every default value passes its own field's constraints.
// Exits 1 naming each problem.
//
//   node validate.mjs FILE...
import { readFileSync } from 'node:fs';
import { validate, getSchemaPackage, getSchemaVersion } from '@bpmn-io/element-templates-validator';

let failed = false;
const fail = (message) => { console.error(message); failed = true; };

for (const file of process.argv.slice(2)) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
    JSON.parse(text);
  } catch (e) {
    fail(`${file}: ${e.message}`);
    continue;
  }
  const { valid, errors } = validate(text);
  if (!valid) {
    for (const e of errors) {
      const at = e.dataPointer ? `${e.dataPointer.value.line + 1}:${e.dataPointer.value.column + 1}` : '?';
      fail(`${file}:${at}: ${e.instancePath || e.dataPath || '/'}: ${e.message}`);
    }
    continue;
  }
  for (const template of JSON.parse(text)) {
    if (!String(template.$schema || '').includes('/@camunda/element-templates-json-schema')) {
      fail(`${file}: ${template.id}: $schema is not the Camunda 7 element template schema`);
    }
    for (const property of template.properties) {
      const name = property.binding.name || property.binding.source;
      const { pattern, notEmpty } = property.constraints || {};
      const value = property.value ?? '';
      if (notEmpty && property.binding.type !== 'camunda:property' && value === '') {
        fail(`${file}: ${template.id}: ${name}: the default value is empty but the field must not be`);
      }
      if (pattern) {
        let regex;
        try {
          regex = new RegExp(typeof pattern === 'string' ? pattern : pattern.value);
        } catch (e) {
          fail(`${file}: ${template.id}: ${name}: the pattern does not compile: ${e.message}`);
          continue;
        }
        if (value !== '' && !regex.test(value)) {
          fail(`${file}: ${template.id}: ${name}: the default value ${JSON.stringify(value)} does not match its pattern`);
        }
      }
    }
  }
  if (!failed) {
    console.log(`${file}: valid (${getSchemaPackage()} ${getSchemaVersion()})`);
  }
}
process.exit(failed ? 1 : 0);
