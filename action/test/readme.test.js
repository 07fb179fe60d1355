'use strict';
// action/README.md against the code: the pinned tag follows package.json's version.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { version } = require('../package.json');

const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

test('the README pins the tag of the current major version', () => {
  const major = version.split('.')[0];
  const pins = [...readme.matchAll(/\/action@action-v(\d+)\b(?!\.)/g)].map((m) => m[1]);
  assert.ok(pins.length >= 2, 'no `uses: .../action@action-vN` in the README');
  assert.deepEqual([...new Set(pins)], [major]);
});

test('the README describes the User-Agent the action sends', () => {
  assert.match(readme, /`trustpub-auth-action\/VERSION node\/NODE_VERSION`/);
  const { USER_AGENT } = require('../lib/http');
  assert.match(USER_AGENT, /^trustpub-auth-action\/\d+\.\d+\.\d+ node\/\d+\.\d+\.\d+$/);
});
