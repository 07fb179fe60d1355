'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const { audienceFor, cargoTokenVariable, main, post } = require('../lib/auth');
const { ActionError } = require('../lib/runner');
const {
  EXPIRES_AT,
  FAST,
  REQUEST_TOKEN,
  TOKEN,
  exchangeOk,
  fakeContext,
  fakeJwt,
  jsonResponse,
  mainEnv,
  networkError,
  oidcOk,
  parseFileCommands,
} = require('./fake');

const EXCHANGE = 'POST /api/v1/trusted_publishing/tokens';
const REVOKE = 'DELETE /api/v1/trusted_publishing/tokens';

function run(routes, inputs = {}, env = {}) {
  const f = fakeContext({ env: { ...mainEnv(inputs), ...env }, routes });
  return main(f.ctx, FAST).then((code) => ({ ...f, code }));
}

// -- inputs -------------------------------------------------------------------------

test('the audience is the registry URL without its scheme', () => {
  assert.equal(audienceFor('https://registry.example'), 'registry.example');
  assert.equal(audienceFor('http://localhost:3000/'), 'localhost:3000');
  assert.equal(audienceFor('https://r.example/sub/path'), 'r.example/sub/path');
});

test('the cargo variable follows cargo naming', () => {
  assert.equal(cargoTokenVariable('my-registry'), 'CARGO_REGISTRIES_MY_REGISTRY_TOKEN');
  assert.throws(() => cargoTokenVariable('bad name\nX=1'), ActionError);
});

test('an invalid url input fails before any request', async () => {
  const r = await run({}, { url: 'registry.example' });
  assert.equal(r.code, 1);
  assert.match(r.stdout(), /::error::Input url: .* is not a URL/);
  assert.equal(r.calls.length, 0);
});

test('an invalid registry input fails before any request', async () => {
  const r = await run({}, { registry: 'a b' });
  assert.equal(r.code, 1);
  assert.match(r.stdout(), /is not a Cargo registry name/);
  assert.equal(r.calls.length, 0);
});

// -- missing OIDC variables -----------------------------------------------------------

test('missing OIDC variables explain the id-token permission', async () => {
  const r = await run({}, {}, { ACTIONS_ID_TOKEN_REQUEST_URL: '' });
  assert.equal(r.code, 1);
  const out = r.stdout();
  assert.match(out, /::error title=Trusted Publishing%3A missing id-token permission::/);
  assert.match(out, /\n {6}id-token: write\n/);
  assert.match(out, /forks and Dependabot runs never get an OIDC token/);
  assert.equal(r.calls.length, 0);
});

test('a Dependabot run is told that no permission will help', async () => {
  const r = await run({}, {}, { ACTIONS_ID_TOKEN_REQUEST_TOKEN: '', GITHUB_ACTOR: 'dependabot[bot]' });
  assert.match(r.stdout(), /started by Dependabot\. GitHub never gives Dependabot runs/);
});

test('a pull_request run is told about forks', async () => {
  const r = await run({}, {}, { ACTIONS_ID_TOKEN_REQUEST_URL: '', GITHUB_EVENT_NAME: 'pull_request' });
  assert.match(r.stdout(), /This is a pull_request run\. Pull requests from forks never get/);
});

// -- success --------------------------------------------------------------------------

test('the OIDC request carries the derived audience and the request token', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] });
  assert.equal(r.code, 0);
  const [oidc] = r.calls;
  assert.equal(
    oidc.url,
    'https://oidc.runner.example/token?api-version=2.0&audience=registry.example',
  );
  assert.equal(oidc.init.headers.Authorization, `bearer ${REQUEST_TOKEN}`);
});

test('the audience input overrides the derived one and is URL-encoded', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] }, { audience: 'a b&c' });
  assert.match(r.calls[0].url, /&audience=a%20b%26c$/);
});

test('the exchange posts the JWT to the tokens endpoint', async () => {
  const jwt = fakeJwt();
  const r = await run({ 'GET oidc': [oidcOk(jwt)], [EXCHANGE]: [exchangeOk()] }, {
    url: 'https://registry.example/',
  });
  const exchange = r.calls[1];
  assert.equal(exchange.url, 'https://registry.example/api/v1/trusted_publishing/tokens');
  assert.deepEqual(JSON.parse(exchange.init.body), { jwt });
});

test('the token is masked before any other line is printed', async () => {
  const jwt = fakeJwt();
  const r = await run({ 'GET oidc': [oidcOk(jwt)], [EXCHANGE]: [exchangeOk()] });
  const lines = r.lines();
  assert.equal(lines[0], `::add-mask::${jwt}`);
  assert.equal(lines[1], `::add-mask::${TOKEN}`);
  // Neither secret appears anywhere else on stdout.
  assert.equal(r.stdout().split(TOKEN).length, 2);
  assert.equal(r.stdout().split(jwt).length, 2);
  assert.match(lines[2], /^Obtained a registry token for octo-lib \(publish-update\), valid until/);
});

test('outputs and state are written through the runner files', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] });
  assert.deepEqual(parseFileCommands(r.files['/runner/output']), {
    token: TOKEN,
    'expires-at': EXPIRES_AT,
  });
  assert.deepEqual(parseFileCommands(r.files['/runner/state']), {
    token: TOKEN,
    url: 'https://registry.example',
    expires_at: EXPIRES_AT,
  });
  assert.equal(r.files['/runner/env'], undefined);
});

test('with a registry input the token is exported for cargo', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] }, {
    registry: 'my-registry',
  });
  assert.deepEqual(parseFileCommands(r.files['/runner/env']), {
    CARGO_REGISTRIES_MY_REGISTRY_TOKEN: TOKEN,
  });
  assert.match(r.stdout(), /Exported as CARGO_REGISTRIES_MY_REGISTRY_TOKEN\./);
});

// -- retries ---------------------------------------------------------------------------

test('OIDC 5xx and network errors are retried with backoff', async () => {
  const r = await run({
    'GET oidc': [() => jsonResponse(503, {}), networkError(), oidcOk()],
    [EXCHANGE]: [exchangeOk()],
  });
  assert.equal(r.code, 0);
  assert.deepEqual(r.sleeps, [1000, 2000]);
  assert.match(r.stdout(), /OIDC token request: HTTP 503; retrying in 1\.0 s \(attempt 2 of 4\)/);
  assert.match(r.stdout(), /OIDC token request: connect ECONNREFUSED; retrying in 2\.0 s/);
});

test('OIDC retries are bounded', async () => {
  const r = await run({ 'GET oidc': [() => jsonResponse(500, { message: 'down' })] });
  assert.equal(r.code, 1);
  assert.equal(r.calls.length, 4);
  assert.match(
    r.stdout(),
    /::error::Could not get an OIDC token: OIDC token request failed after 4 attempts: HTTP 500 \(down\)/,
  );
});

test('an OIDC 4xx is not retried', async () => {
  const r = await run({ 'GET oidc': [() => jsonResponse(403, { message: 'forbidden' })] });
  assert.equal(r.code, 1);
  assert.equal(r.calls.length, 1);
  assert.match(r.stdout(), /::error::OIDC token request refused: HTTP 403 \(forbidden\)/);
});

test('an OIDC answer without a value fails', async () => {
  const r = await run({ 'GET oidc': [() => jsonResponse(200, { nope: 1 })] });
  assert.equal(r.code, 1);
  assert.match(r.stdout(), /OIDC token request refused: HTTP 200/);
});

test('an exchange 5xx is retried with a fresh OIDC token', async () => {
  const r = await run({
    'GET oidc': [oidcOk()],
    [EXCHANGE]: [() => jsonResponse(503, { errors: [{ detail: 'store down' }] }), exchangeOk()],
  });
  assert.equal(r.code, 0);
  const posted = r.calls.filter((c) => c.key === EXCHANGE).map((c) => JSON.parse(c.init.body).jwt);
  assert.equal(posted.length, 2);
  assert.notEqual(posted[0], posted[1]);
  assert.match(r.stdout(), /Token exchange: HTTP 503 \(store down\); retrying/);
});

test('exchange retries are bounded', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [networkError()] });
  assert.equal(r.code, 1);
  assert.equal(r.calls.filter((c) => c.key === EXCHANGE).length, 3);
  assert.match(r.stdout(), /::error::Could not exchange the OIDC token: Token exchange failed after 3/);
});

// -- refusals --------------------------------------------------------------------------

test('a refused exchange shows the details, the unverified claims and a policy hint', async () => {
  const jwt = fakeJwt({ environment: 'release' });
  const detail = 'No Trusted Publishing config found for repository `octo-org/octo-lib`.';
  const r = await run({
    'GET oidc': [oidcOk(jwt)],
    [EXCHANGE]: [() => jsonResponse(400, { errors: [{ detail }] })],
  });
  assert.equal(r.code, 1);
  assert.equal(r.calls.filter((c) => c.key === EXCHANGE).length, 1);
  const out = r.stdout();
  assert.ok(out.includes(`::error title=Trusted Publishing exchange refused::${detail}\n`));
  assert.match(out, /\n {2}- No Trusted Publishing config found/);
  assert.match(out, /decoded WITHOUT verifying its signature \(a debugging aid;/);
  assert.match(out, /\n {2}repository_owner_id +131804563\n/);
  assert.match(out, /\n {2}environment = "release"\n/);
  assert.match(out, /\n {2}workflow = "release.yml"\n/);
  // Only the mask command (which the runner consumes) ever carries the JWT.
  const shown = r.lines().filter((l) => !l.startsWith('::add-mask::'));
  assert.ok(!shown.join('\n').includes('MUST-NOT-BE-SHOWN'), 'the signature is never printed');
  assert.equal(r.files['/runner/output'], undefined);
  assert.equal(r.files['/runner/state'], undefined);
});

test('a non-JSON answer suggests checking the url input', async () => {
  const r = await run({
    'GET oidc': [oidcOk()],
    [EXCHANGE]: [() => new Response('<html>Not Found</html>', { status: 404 })],
  });
  assert.equal(r.code, 1);
  assert.match(r.stdout(), /answered HTTP 404 without an error message: is `url`/);
});

test('a redirect is reported, not followed', async () => {
  const r = await run({
    'GET oidc': [oidcOk()],
    [EXCHANGE]: [() => jsonResponse(301, undefined, { Location: 'https://new.example/' })],
  });
  assert.equal(r.code, 1);
  assert.match(r.stdout(), /redirect \(HTTP 301 to https:\/\/new\.example\/\); set `url` to the final address/);
});

test('a 200 answer without a token is a failure', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [() => jsonResponse(200, {})] });
  assert.equal(r.code, 1);
});

test('a reusable workflow is warned about once', async () => {
  const jwt = fakeJwt({
    job_workflow_ref: 'octo-org/shared/.github/workflows/publish.yml@refs/heads/main',
  });
  const r = await run({ 'GET oidc': [oidcOk(jwt)], [EXCHANGE]: [exchangeOk()] });
  assert.equal(r.code, 0);
  const warnings = r.lines().filter((l) => l.startsWith('::warning'));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /reusable workflow octo-org\/shared\/.github\/workflows\/publish.yml/);
  assert.match(warnings[0], /calling workflow file \(release.yml\)/);
});

test('no reusable-workflow warning for a plain workflow', async () => {
  const r = await run({ 'GET oidc': [oidcOk()], [EXCHANGE]: [exchangeOk()] });
  assert.ok(!r.stdout().includes('::warning'));
});

// -- post ------------------------------------------------------------------------------

function runPost(routes, state = {}) {
  const env = { INPUT_URL: 'https://registry.example' };
  for (const [k, v] of Object.entries(state)) env[`STATE_${k}`] = v;
  const f = fakeContext({ env, routes });
  return post(f.ctx, FAST).then((code) => ({ ...f, code }));
}

test('post without a token does nothing', async () => {
  const r = await runPost({});
  assert.equal(r.code, 0);
  assert.equal(r.calls.length, 0);
  assert.equal(r.stdout(), 'No registry token to revoke.\n');
});

test('post revokes the token with a bearer header', async () => {
  const r = await runPost({ [REVOKE]: [() => new Response(null, { status: 204 })] }, {
    token: TOKEN,
    url: 'https://registry.example',
  });
  assert.equal(r.code, 0);
  assert.equal(r.calls.length, 1);
  assert.equal(r.calls[0].init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.deepEqual(r.lines(), [`::add-mask::${TOKEN}`, 'Revoked the registry token.']);
});

test('post retries a transient failure', async () => {
  const r = await runPost(
    { [REVOKE]: [networkError(), () => new Response(null, { status: 204 })] },
    { token: TOKEN, url: 'https://registry.example' },
  );
  assert.equal(r.code, 0);
  assert.equal(r.calls.length, 2);
  assert.match(r.stdout(), /Revoked the registry token\./);
});

test('a failed revocation warns but does not fail the job', async () => {
  const r = await runPost({ [REVOKE]: [() => jsonResponse(500, {})] }, {
    token: TOKEN,
    url: 'https://registry.example',
    expires_at: EXPIRES_AT,
  });
  assert.equal(r.code, 0);
  assert.equal(r.calls.length, 3);
  assert.match(
    r.stdout(),
    /::warning::Could not revoke the registry token: Token revocation failed after 3 attempts: HTTP 500; it expires on its own at 2030-01-01T00:30:00Z\./,
  );
});

test('a refused revocation warns with the server detail', async () => {
  const detail = 'Invalid `Authorization` header: Failed to parse token';
  const r = await runPost({ [REVOKE]: [() => jsonResponse(401, { errors: [{ detail }] })] }, {
    token: TOKEN,
    url: 'https://registry.example',
  });
  assert.equal(r.code, 0);
  assert.equal(r.calls.length, 1);
  assert.ok(r.stdout().includes(`::warning::Could not revoke the registry token: HTTP 401 (${detail})`));
});

test('post falls back to the url input when the state has none', async () => {
  const r = await runPost({ [REVOKE]: [() => new Response(null, { status: 204 })] }, { token: TOKEN });
  assert.equal(r.calls[0].url, 'https://registry.example/api/v1/trusted_publishing/tokens');
});
