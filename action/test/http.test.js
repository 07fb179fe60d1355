'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const { Runner } = require('../lib/runner');
const { TransientError, backoffDelay, errorDetails, retrying, send } = require('../lib/http');
const { fakeContext, jsonResponse, networkError } = require('./fake');

const OPTS = { baseDelayMs: 1000, maxDelayMs: 15000 };

test('backoff doubles per attempt and is capped', () => {
  const mid = () => 0.5;
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, mid, OPTS)),
    [1000, 2000, 4000, 8000, 15000, 15000],
  );
});

test('backoff jitter stays within 75%..125%', () => {
  assert.equal(backoffDelay(2, () => 0, OPTS), 1500);
  assert.equal(backoffDelay(2, () => 0.999999, OPTS), 2500);
});

function routed(handlers) {
  return fakeContext({ routes: { 'GET /x': handlers } });
}

test('send returns 2xx and 4xx answers with their JSON', async () => {
  const f = routed([() => jsonResponse(404, { errors: [{ detail: 'nope' }] })]);
  const res = await send(f.ctx, 'https://registry.example/x', { method: 'GET' }, 1000);
  assert.equal(res.status, 404);
  assert.deepEqual(errorDetails(res.json), ['nope']);
});

for (const status of [429, 500, 502, 503]) {
  test(`send treats HTTP ${status} as transient`, async () => {
    const f = routed([() => jsonResponse(status, { errors: [{ detail: 'busy' }] })]);
    await assert.rejects(
      send(f.ctx, 'https://registry.example/x', {}, 1000),
      (err) => err instanceof TransientError && err.message === `HTTP ${status} (busy)`,
    );
  });
}

test('send treats network errors as transient and names the cause', async () => {
  const f = routed([networkError()]);
  await assert.rejects(send(f.ctx, 'https://registry.example/x', {}, 1000), (err) => {
    assert.ok(err instanceof TransientError);
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
});

test('send gives up after its timeout', async () => {
  // A server that never answers. The keep-alive timer stands in for the open socket a
  // real request holds (AbortSignal.timeout's own timer does not keep node running).
  const hang = (url, init) =>
    new Promise((resolve, reject) => {
      const keepAlive = setTimeout(() => reject(new Error('timeout never fired')), 5000);
      init.signal.addEventListener('abort', () => {
        clearTimeout(keepAlive);
        reject(init.signal.reason);
      });
    });
  const f = routed([hang]);
  await assert.rejects(
    send(f.ctx, 'https://registry.example/x', {}, 20),
    (err) => err instanceof TransientError && /no answer within 0.02 s/.test(err.message),
  );
});

test('send never follows redirects', async () => {
  const f = routed([() => jsonResponse(302, undefined, { Location: 'https://elsewhere/' })]);
  const res = await send(f.ctx, 'https://registry.example/x', {}, 1000);
  assert.equal(f.calls[0].init.redirect, 'manual');
  assert.equal(res.status, 302);
  assert.equal(res.location, 'https://elsewhere/');
});

test('errorDetails reads trustpub errors and GitHub messages', () => {
  assert.deepEqual(errorDetails({ errors: [{ detail: 'a' }, { detail: 'b' }, {}] }), ['a', 'b']);
  assert.deepEqual(errorDetails({ message: 'm' }), ['m']);
  assert.deepEqual(errorDetails('text'), []);
  assert.deepEqual(errorDetails(undefined), []);
});

test('retrying retries transient failures with backoff, then succeeds', async () => {
  const f = fakeContext();
  let n = 0;
  const result = await retrying(f.ctx, new Runner(f.ctx), 'thing', { attempts: 4 }, async () => {
    n += 1;
    if (n < 3) throw new TransientError('HTTP 503');
    return 'done';
  });
  assert.equal(result, 'done');
  assert.deepEqual(f.sleeps, [1000, 2000]);
  assert.match(f.stdout(), /thing: HTTP 503; retrying in 1.0 s \(attempt 2 of 4\)/);
});

test('retrying stops after the last attempt', async () => {
  const f = fakeContext();
  let n = 0;
  await assert.rejects(
    retrying(f.ctx, new Runner(f.ctx), 'thing', { attempts: 3 }, async () => {
      n += 1;
      throw new TransientError('HTTP 500');
    }),
    /thing failed after 3 attempts: HTTP 500/,
  );
  assert.equal(n, 3);
  assert.equal(f.sleeps.length, 2);
});

test('retrying does not retry other errors', async () => {
  const f = fakeContext();
  let n = 0;
  await assert.rejects(
    retrying(f.ctx, new Runner(f.ctx), 'thing', { attempts: 3 }, async () => {
      n += 1;
      throw new Error('final');
    }),
    /final/,
  );
  assert.equal(n, 1);
  assert.deepEqual(f.sleeps, []);
});
