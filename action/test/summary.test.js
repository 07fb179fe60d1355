'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const { main, post } = require('../lib/auth');
const { USER_AGENT } = require('../lib/http');
const { version } = require('../package.json');
const {
  EXPIRES_AT,
  FAST,
  TOKEN,
  exchangeOk,
  fakeContext,
  fakeJwt,
  jsonResponse,
  mainEnv,
  oidcOk,
} = require('./fake');

const EXCHANGE = 'POST /api/v1/trusted_publishing/tokens';
const REVOKE = 'DELETE /api/v1/trusted_publishing/tokens';
const SUMMARY = '/runner/summary';

function run(routes, inputs = {}, env = {}) {
  const f = fakeContext({
    env: { GITHUB_STEP_SUMMARY: SUMMARY, ...mainEnv(inputs), ...env },
    routes,
  });
  return main(f.ctx, FAST).then((code) => ({ ...f, code }));
}

// -- User-Agent -------------------------------------------------------------------------

test('every request names the action and its version as User-Agent', async () => {
  const jwt = fakeJwt();
  const r = await run({ 'GET oidc': [oidcOk(jwt)], [EXCHANGE]: [exchangeOk()] });
  assert.equal(r.code, 0);
  const p = fakeContext({
    env: { STATE_token: TOKEN, STATE_url: 'https://registry.example' },
    routes: { [REVOKE]: [() => new Response(null, { status: 204 })] },
  });
  assert.equal(await post(p.ctx, FAST), 0);
  const calls = [...r.calls, ...p.calls];
  assert.deepEqual(
    calls.map((c) => c.key),
    ['GET oidc', EXCHANGE, REVOKE],
  );
  for (const call of calls) {
    assert.equal(call.init.headers['User-Agent'], `trustpub-auth-action/${version} node/${process.versions.node}`);
  }
  assert.equal(USER_AGENT.split(' ')[0], `trustpub-auth-action/${version}`);
});

test('the version is SemVer', () => {
  assert.match(version, /^\d+\.\d+\.\d+$/);
});

// -- job summary ------------------------------------------------------------------------

test('the job summary shows the crates, operations and expiry granted', async () => {
  const jwt = fakeJwt();
  const r = await run(
    {
      'GET oidc': [oidcOk(jwt)],
      [EXCHANGE]: [
        exchangeOk({
          crates: { 'octo-lib': ['publish-update', 'yank'], 'octo-core': ['publish-new'] },
        }),
      ],
    },
    { registry: 'my-registry' },
  );
  assert.equal(r.code, 0);
  const summary = r.files[SUMMARY];
  assert.ok(summary, 'no summary written');
  assert.match(summary, /^### Trusted Publishing: registry token granted\n/);
  assert.match(summary, /\| octo-core \| publish-new \|\n\| octo-lib \| publish-update, yank \|/);
  assert.ok(summary.includes(`Expires: ${EXPIRES_AT}; revoked when the job ends.`));
  assert.ok(summary.includes('Registry: https://registry.example'));
  assert.ok(summary.includes('CARGO&#95;REGISTRIES&#95;MY&#95;REGISTRY&#95;TOKEN'));
  // Neither the registry token nor the OIDC token, nor any part of them.
  assert.ok(!summary.includes(TOKEN));
  for (const part of jwt.split('.')) assert.ok(!summary.includes(part));
});

test('registry values cannot format, link or break the summary', async () => {
  const r = await run({
    'GET oidc': [oidcOk()],
    [EXCHANGE]: [
      exchangeOk({
        crates: { '<img src=x onerror=alert(1)>|[x](https://evil.example)': ['**bold**\n| a |'] },
        expires_at: '`2030`<script>',
      }),
    ],
  });
  assert.equal(r.code, 0);
  const summary = r.files[SUMMARY];
  const rows = summary.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Crate') && !l.startsWith('| ---'));
  assert.equal(rows.length, 1);
  assert.equal(rows[0].split('|').length, 4, rows[0]); // two cells: no injected column
  for (const forbidden of ['<', '>', '`', '[', '](', '**']) {
    assert.ok(!summary.includes(forbidden), `${forbidden} in the summary:\n${summary}`);
  }
});

test('a refused exchange writes no summary', async () => {
  const r = await run({
    'GET oidc': [oidcOk()],
    [EXCHANGE]: [() => jsonResponse(400, { errors: [{ detail: 'No matching policy' }] })],
  });
  assert.equal(r.code, 1);
  assert.equal(r.files[SUMMARY], undefined);
});

test('without GITHUB_STEP_SUMMARY the action succeeds and writes none', async () => {
  const r = await run(
    { 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] },
    {},
    { GITHUB_STEP_SUMMARY: '' },
  );
  assert.equal(r.code, 0);
  assert.deepEqual(Object.keys(r.files).sort(), ['/runner/output', '/runner/state']);
});

test('a summary that cannot be written is a warning, not a failure', async () => {
  const f = fakeContext({
    env: { GITHUB_STEP_SUMMARY: SUMMARY, ...mainEnv() },
    routes: { 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] },
  });
  const append = f.ctx.appendFile;
  f.ctx.appendFile = (path, text) => {
    if (path === SUMMARY) throw new Error('EACCES: permission denied');
    append(path, text);
  };
  assert.equal(await main(f.ctx, FAST), 0);
  const warning = f.lines().find((l) => l.startsWith('::warning::'));
  assert.match(warning, /^::warning::Could not write the job summary: EACCES/);
  assert.ok(!warning.includes(TOKEN));
});
