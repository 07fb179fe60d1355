'use strict';
// HTTP with timeouts and bounded retries. Only failures that another attempt can fix
// are retried: network errors, timeouts, 429 and 5xx. A 4xx answer is final.

// A failure worth another attempt; `reason` is safe to print (never a secret).
class TransientError extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'TransientError';
  }
}

const { version } = require('../package.json');

// Sent on every request, so registry and GitHub logs can tell this action (and its
// version) from other clients.
const USER_AGENT = `trustpub-auth-action/${version} node/${process.versions.node}`;

const DEFAULT_RETRY = { attempts: 4, baseDelayMs: 1000, maxDelayMs: 15000 };

// Exponential backoff with jitter (75%..125%), so that many jobs failing together do not
// retry in lockstep.
function backoffDelay(attempt, random, { baseDelayMs, maxDelayMs }) {
  const exponential = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exponential * (0.75 + 0.5 * random()));
}

// Run `fn(attempt)` until it returns, at most `attempts` times. It throws TransientError
// to ask for another attempt; any other error stops at once.
async function retrying(ctx, runner, what, options, fn) {
  const opts = { ...DEFAULT_RETRY, ...options };
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      if (attempt >= opts.attempts) {
        throw new TransientError(`${what} failed after ${attempt} attempts: ${err.message}`);
      }
      const delay = backoffDelay(attempt, ctx.random, opts);
      runner.info(
        `${what}: ${err.message}; retrying in ${(delay / 1000).toFixed(1)} s ` +
          `(attempt ${attempt + 1} of ${opts.attempts})`,
      );
      await ctx.sleep(delay);
    }
  }
}

function describeFetchError(err, timeoutMs) {
  if (err && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return `no answer within ${timeoutMs / 1000} s`;
  }
  const cause = err && err.cause;
  const code = cause && (cause.code || cause.name);
  const text = (cause && cause.message) || (err && err.message) || String(err);
  return code && !text.includes(code) ? `${code}: ${text}` : text;
}

// One request with a timeout covering the headers and the body. Returns
// {status, text, json}; network errors, timeouts, 429 and 5xx become TransientError.
async function send(ctx, url, init, timeoutMs) {
  let response;
  let text;
  try {
    response = await ctx.fetch(url, {
      ...init,
      headers: { ...init.headers, 'User-Agent': USER_AGENT },
      // Never follow a redirect with a credential attached; the caller reports it.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (err) {
    throw new TransientError(describeFetchError(err, timeoutMs));
  }
  if (response.status === 429 || response.status >= 500) {
    throw new TransientError(`HTTP ${response.status}${summarize(parseJson(text))}`);
  }
  const location = response.headers.get('location') || undefined;
  return { status: response.status, text, json: parseJson(text), location };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// The error texts a server sent: trustpub's `errors[].detail`, or GitHub's `message`.
function errorDetails(json) {
  if (!json || typeof json !== 'object') return [];
  if (Array.isArray(json.errors)) {
    return json.errors
      .map((e) => (e && typeof e.detail === 'string' ? e.detail : undefined))
      .filter(Boolean);
  }
  if (typeof json.message === 'string') return [json.message];
  return [];
}

function summarize(json) {
  const details = errorDetails(json);
  return details.length ? ` (${details.join('; ')})` : '';
}

module.exports = {
  DEFAULT_RETRY,
  TransientError,
  USER_AGENT,
  backoffDelay,
  errorDetails,
  retrying,
  send,
  summarize,
};
