'use strict';
// The two steps of the action. `main`: OIDC token -> registry token (outputs, state,
// optional cargo variable). `post`: revoke that token when the job ends.

const { ActionError, Runner } = require('./runner');
const { TransientError, errorDetails, retrying, send } = require('./http');
const { claimLines, decodeUnverified, policyHint, reusableWorkflow } = require('./claims');

const TOKENS_PATH = '/api/v1/trusted_publishing/tokens';

const DEFAULT_SETTINGS = {
  oidc: { attempts: 4, timeoutMs: 10000 },
  exchange: { attempts: 3, timeoutMs: 30000 },
  revoke: { attempts: 3, timeoutMs: 10000 },
  retry: { baseDelayMs: 1000, maxDelayMs: 15000 },
};

// The audience the registry expects by default: its URL without the scheme
// (https://registry.example -> registry.example, http://localhost:3000 -> localhost:3000).
function audienceFor(url) {
  return url.replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//, '').replace(/\/+$/, '');
}

function tokensEndpoint(url) {
  return url.replace(/\/+$/, '') + TOKENS_PATH;
}

function checkRegistryUrl(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new ActionError(`Input url: ${JSON.stringify(url)} is not a URL (expected https://HOST)`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new ActionError(`Input url: expected an https:// URL, got ${parsed.protocol}`);
  }
  if (parsed.username || parsed.password || parsed.search || parsed.hash) {
    throw new ActionError('Input url: expected the registry base URL, without credentials or query');
  }
}

// Cargo reads CARGO_REGISTRIES_<NAME>_TOKEN with the name upper-cased and '-' as '_'.
function cargoTokenVariable(registry) {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(registry)) {
    throw new ActionError(
      `Input registry: ${JSON.stringify(registry)} is not a Cargo registry name ` +
        '(letters, digits, - and _)',
    );
  }
  return `CARGO_REGISTRIES_${registry.toUpperCase().replace(/-/g, '_')}_TOKEN`;
}

function missingOidcError(env) {
  const details = [
    'This job has no OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL and',
    'ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set. Give the job permission to request one:',
    '',
    '    permissions:',
    '      id-token: write',
    '      contents: read',
    '',
    '(on the job, or on the workflow; a job-level `permissions:` replaces the workflow one).',
    '',
  ];
  const actor = env.GITHUB_ACTOR || '';
  const event = env.GITHUB_EVENT_NAME || '';
  if (actor === 'dependabot[bot]') {
    details.push(
      'This run was started by Dependabot. GitHub never gives Dependabot runs an OIDC token,',
      'whatever the permissions: publish from a push, release or workflow_dispatch run.',
    );
  } else if (event === 'pull_request') {
    details.push(
      'This is a pull_request run. Pull requests from forks never get an OIDC token,',
      'whatever the permissions: publish from a push, release or workflow_dispatch run.',
    );
  } else {
    details.push(
      'Pull requests from forks and Dependabot runs never get an OIDC token, whatever the',
      'permissions: publish from a push, release or workflow_dispatch run.',
    );
  }
  return new ActionError('No OIDC token available: add `permissions: id-token: write`', {
    title: 'Trusted Publishing: missing id-token permission',
    details,
  });
}

async function requestIdToken(ctx, runner, settings, audience) {
  const base = ctx.env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const requestToken = ctx.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  // The runner's URL already carries ?api-version=...; the audience is one more parameter.
  const url = `${base}${base.includes('?') ? '&' : '?'}audience=${encodeURIComponent(audience)}`;
  const attempt = retrying(
    ctx,
    runner,
    'OIDC token request',
    { ...settings.retry, attempts: settings.oidc.attempts },
    async () => {
      const res = await send(
        ctx,
        url,
        {
          method: 'GET',
          headers: { Authorization: `bearer ${requestToken}`, Accept: 'application/json' },
        },
        settings.oidc.timeoutMs,
      );
      const value = res.json && res.json.value;
      if (res.status !== 200 || typeof value !== 'string' || !value) {
        const why = errorDetails(res.json).join('; ');
        throw new ActionError(
          `OIDC token request refused: HTTP ${res.status}${why ? ` (${why})` : ''}`,
        );
      }
      return value;
    },
  );
  // Retries are spent here; the exchange loop must not multiply them.
  return attempt.catch((err) => {
    if (err instanceof TransientError) {
      throw new ActionError(`Could not get an OIDC token: ${err.message}`);
    }
    throw err;
  });
}

async function exchangeOnce(ctx, settings, endpoint, jwt) {
  const res = await send(
    ctx,
    endpoint,
    {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ jwt }),
    },
    settings.exchange.timeoutMs,
  );
  if (res.status === 200 && res.json && typeof res.json.token === 'string' && res.json.token) {
    return { ok: true, body: res.json };
  }
  return { ok: false, res };
}

function refusalError(url, endpoint, res, claims) {
  const details = errorDetails(res.json);
  const lines = [];
  if (res.status >= 300 && res.status < 400) {
    lines.push(
      `${endpoint} answered with a redirect (HTTP ${res.status}` +
        `${res.location ? ` to ${res.location}` : ''}); set \`url\` to the final address.`,
    );
  } else if (details.length === 0) {
    lines.push(
      `${endpoint} answered HTTP ${res.status} without an error message: is \`url\` ` +
        `(${url}) the base URL of a trustpub registry?`,
    );
  } else {
    lines.push(`The registry refused the token (HTTP ${res.status}):`);
    for (const detail of details) lines.push(`  - ${detail}`);
  }
  if (claims) {
    lines.push(
      '',
      'Claims of the OIDC token, decoded WITHOUT verifying its signature (a debugging aid;',
      'the signature is not shown):',
      ...claimLines(claims).map((l) => `  ${l}`),
      '',
      'A trust policy accepting this job would say (compare with the registry\'s policy):',
      ...policyHint(claims).map((l) => `  ${l}`),
    );
  }
  const message = details.length ? details.join('\n') : lines[0];
  return new ActionError(message, { title: 'Trusted Publishing exchange refused', details: lines });
}

function describeCrates(crates) {
  if (!crates || typeof crates !== 'object') return '';
  const names = Object.keys(crates).sort();
  if (!names.length) return '';
  return ` for ${names
    .map((n) => (Array.isArray(crates[n]) ? `${n} (${crates[n].join(', ')})` : n))
    .join(', ')}`;
}

// Text for the job summary, which GitHub renders as Markdown and HTML: anything but
// letters, digits and a few punctuation marks becomes a character reference, so a value
// from the registry can neither format nor link nor break the table.
function inert(value) {
  return String(value).replace(/[^A-Za-z0-9 .:/-]/g, (c) => `&#${c.codePointAt(0)};`);
}

// What was granted, for the job's summary page: registry, crates and their operations,
// expiry. Never the token itself.
function grantSummary({ url, crates, expiresAt, cargoVariable }) {
  const lines = ['### Trusted Publishing: registry token granted', ''];
  lines.push(`Registry: ${inert(url)}`, '');
  const names = crates && typeof crates === 'object' ? Object.keys(crates).sort() : [];
  if (names.length) {
    lines.push('| Crate | Operations |', '| --- | --- |');
    for (const name of names) {
      const ops = Array.isArray(crates[name]) ? crates[name].map(inert).join(', ') : '';
      lines.push(`| ${inert(name)} | ${ops} |`);
    }
  } else {
    lines.push('The registry did not list the crates this token covers.');
  }
  lines.push('');
  lines.push(
    `Expires: ${expiresAt ? inert(expiresAt) : 'not stated by the registry'}; ` +
      'revoked when the job ends.',
  );
  if (cargoVariable) lines.push('', `Exported to the following steps as ${inert(cargoVariable)}.`);
  lines.push('');
  return lines.join('\n');
}

async function main(ctx, settings = DEFAULT_SETTINGS) {
  const runner = new Runner(ctx);
  try {
    const url = runner.input('url', { required: true });
    checkRegistryUrl(url);
    const audience = runner.input('audience') || audienceFor(url);
    const registry = runner.input('registry');
    const cargoVariable = registry ? cargoTokenVariable(registry) : undefined;
    if (!ctx.env.ACTIONS_ID_TOKEN_REQUEST_URL || !ctx.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN) {
      throw missingOidcError(ctx.env);
    }
    const endpoint = tokensEndpoint(url);

    let warnedReusable = false;
    // Each exchange attempt uses a fresh OIDC token: if a failed attempt reached the
    // registry, its jti is spent, and a retry with the same JWT would be refused as a
    // replay.
    const body = await retrying(
      ctx,
      runner,
      'Token exchange',
      { ...settings.retry, attempts: settings.exchange.attempts },
      async () => {
        const jwt = await requestIdToken(ctx, runner, settings, audience);
        // Until it is exchanged, the OIDC token is a credential: keep it out of the log.
        runner.mask(jwt);
        const claims = decodeUnverified(jwt);
        const reusable = reusableWorkflow(claims);
        if (reusable && !warnedReusable) {
          warnedReusable = true;
          runner.warning(
            `This job runs the reusable workflow ${reusable.job}, called by ${reusable.caller}. ` +
              'Trust policies match the calling workflow file' +
              (reusable.callerRef ? ` (${reusable.callerRef.file})` : '') +
              '; a policy can also require the reusable one ([policy.job_workflow]).',
            { title: 'Trusted Publishing: reusable workflow' },
          );
        }
        const outcome = await exchangeOnce(ctx, settings, endpoint, jwt);
        if (!outcome.ok) throw refusalError(url, endpoint, outcome.res, claims);
        return outcome.body;
      },
    ).catch((err) => {
      if (err instanceof TransientError) {
        throw new ActionError(`Could not exchange the OIDC token: ${err.message}`);
      }
      throw err;
    });

    const token = body.token;
    // First thing once the token exists: mask it, before any other line is printed.
    runner.mask(token);
    runner.saveState('token', token);
    runner.saveState('url', url);
    const expiresAt = typeof body.expires_at === 'string' ? body.expires_at : '';
    if (expiresAt) runner.saveState('expires_at', expiresAt);
    runner.setOutput('token', token);
    runner.setOutput('expires-at', expiresAt);
    if (cargoVariable) runner.exportVariable(cargoVariable, token);
    runner.info(
      `Obtained a registry token${describeCrates(body.crates)}` +
        `${expiresAt ? `, valid until ${expiresAt}` : ''}.` +
        `${cargoVariable ? ` Exported as ${cargoVariable}.` : ''}` +
        ' It is revoked when the job ends.',
    );
    try {
      runner.summary(grantSummary({ url, crates: body.crates, expiresAt, cargoVariable }));
    } catch (err) {
      // The token is obtained and the job can publish: a summary it cannot write is no failure.
      runner.warning(`Could not write the job summary: ${err && err.message}`);
    }
    return 0;
  } catch (err) {
    reportFailure(runner, err);
    return 1;
  }
}

function reportFailure(runner, err) {
  if (err instanceof ActionError) {
    runner.error(err.message, { title: err.title });
    if (err.details.length) {
      for (const line of err.details) runner.info(line);
    }
    return;
  }
  // A bug in the action: show what happened (an internal error never holds a secret
  // because secrets are masked as soon as they are received).
  runner.error(`Unexpected error in the trustpub action: ${err && err.stack ? err.stack : err}`);
}

async function post(ctx, settings = DEFAULT_SETTINGS) {
  const runner = new Runner(ctx);
  const token = runner.state('token');
  if (!token) {
    runner.info('No registry token to revoke.');
    return 0;
  }
  runner.mask(token);
  const url = runner.state('url') || runner.input('url');
  const expiresAt = runner.state('expires_at');
  const later = expiresAt ? `it expires on its own at ${expiresAt}` : 'it expires on its own';
  try {
    const res = await retrying(
      ctx,
      runner,
      'Token revocation',
      { ...settings.retry, attempts: settings.revoke.attempts },
      () =>
        send(
          ctx,
          tokensEndpoint(url),
          { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } },
          settings.revoke.timeoutMs,
        ),
    );
    if (res.status === 204 || res.status === 200) {
      runner.info('Revoked the registry token.');
    } else {
      const why = errorDetails(res.json).join('; ');
      runner.warning(
        `Could not revoke the registry token: HTTP ${res.status}${why ? ` (${why})` : ''}; ${later}.`,
      );
    }
  } catch (err) {
    // Revocation is hygiene, not the job's purpose: a failure must not fail the job.
    const reason = err instanceof TransientError ? err.message : String(err && err.message);
    runner.warning(`Could not revoke the registry token: ${reason}; ${later}.`);
  }
  return 0;
}

module.exports = {
  DEFAULT_SETTINGS,
  audienceFor,
  cargoTokenVariable,
  grantSummary,
  main,
  post,
  tokensEndpoint,
};
