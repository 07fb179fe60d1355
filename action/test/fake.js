'use strict';
// Test doubles for the action's context: environment, stdout, runner files, HTTP, time.
// (Under test/, so `node --test` also loads this file; it defines no tests.)

const OIDC_URL = 'https://oidc.runner.example/token?api-version=2.0';
const REQUEST_TOKEN = 'request-token-secret';
const REGISTRY = 'https://registry.example';
const TOKEN = 'tpub_registry-token-secret';
const EXPIRES_AT = '2030-01-01T00:30:00Z';

function base64url(value) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

let serial = 0;

// A JWT-shaped string: real header and payload encoding, a recognisable fake signature.
function fakeJwt(overrides = {}) {
  serial += 1;
  const claims = {
    iss: 'https://token.actions.githubusercontent.com',
    aud: 'registry.example',
    jti: `jti-${serial}`,
    repository: 'octo-org/octo-lib',
    repository_owner: 'octo-org',
    repository_owner_id: '131804563',
    ref: 'refs/tags/v1.0.0',
    workflow_ref: 'octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.0.0',
    job_workflow_ref: 'octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.0.0',
    event_name: 'push',
    ...overrides,
  };
  const header = base64url({ alg: 'RS256', kid: 'k1', typ: 'JWT' });
  return `${header}.${base64url(claims)}.SIGNATURE-${serial}-MUST-NOT-BE-SHOWN`;
}

function jsonResponse(status, body, headers = {}) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

// A fetch that answers from `routes`: {"GET oidc": [handler, ...]} consumed in order;
// the last handler repeats. A handler returns a Response, or throws.
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const method = init.method || 'GET';
    const key = url.startsWith('https://oidc.runner.example')
      ? `${method} oidc`
      : `${method} ${url.replace(REGISTRY, '')}`;
    const handlers = routes[key];
    if (!handlers) throw new Error(`unexpected request ${key}`);
    const index = calls.filter((c) => c.key === key).length;
    calls.push({ key, url, init });
    const handler = handlers[Math.min(index, handlers.length - 1)];
    return handler(url, init);
  };
  return { fetch, calls };
}

function oidcOk(jwt = undefined) {
  return () => jsonResponse(200, { value: jwt || fakeJwt() });
}

function exchangeOk(extra = {}) {
  return () =>
    jsonResponse(200, {
      token: TOKEN,
      expires_at: EXPIRES_AT,
      crates: { 'octo-lib': ['publish-update'] },
      ...extra,
    });
}

function networkError() {
  return () => {
    throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
  };
}

// A context whose files live in memory and whose sleeps are recorded, not waited.
function fakeContext({ env = {}, routes = {} } = {}) {
  const files = {};
  const out = [];
  const sleeps = [];
  const { fetch, calls } = fakeFetch(routes);
  let uuid = 0;
  const ctx = {
    env: {
      GITHUB_OUTPUT: '/runner/output',
      GITHUB_STATE: '/runner/state',
      GITHUB_ENV: '/runner/env',
      ...env,
    },
    fetch,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    write: (text) => out.push(text),
    appendFile: (path, text) => {
      files[path] = (files[path] || '') + text;
    },
    random: () => 0.5,
    uuid: () => `uuid-${++uuid}`,
  };
  return {
    ctx,
    files,
    sleeps,
    calls,
    stdout: () => out.join(''),
    lines: () => out.join('').split('\n').filter(Boolean),
  };
}

function mainEnv(inputs = {}) {
  const env = {
    ACTIONS_ID_TOKEN_REQUEST_URL: OIDC_URL,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
    INPUT_URL: REGISTRY,
    INPUT_AUDIENCE: '',
    INPUT_REGISTRY: '',
  };
  for (const [name, value] of Object.entries(inputs)) env[`INPUT_${name.toUpperCase()}`] = value;
  return env;
}

// Parse a runner file of `name<<DELIM\nvalue\nDELIM\n` entries.
function parseFileCommands(text = '') {
  const result = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i]);
    if (!m) continue;
    const values = [];
    for (i += 1; lines[i] !== m[2]; i++) values.push(lines[i]);
    result[m[1]] = values.join('\n');
  }
  return result;
}

const FAST = {
  oidc: { attempts: 4, timeoutMs: 1000 },
  exchange: { attempts: 3, timeoutMs: 1000 },
  revoke: { attempts: 3, timeoutMs: 1000 },
  retry: { baseDelayMs: 1000, maxDelayMs: 15000 },
};

module.exports = {
  EXPIRES_AT,
  FAST,
  OIDC_URL,
  REGISTRY,
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
};
