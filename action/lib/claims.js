'use strict';
// Reading an OIDC token's claims for humans. Nothing here verifies anything: the
// registry verifies the token; we only show what it carries when something goes wrong.

const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';
const WORKFLOWS_DIR = '.github/workflows/';

// The payload, decoded WITHOUT checking the signature. The signature segment is never
// read, kept or shown. Returns undefined when the token is not a JWT.
function decodeUnverified(jwt) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? payload : undefined;
  } catch {
    return undefined;
  }
}

// OWNER/REPO/.github/workflows/FILE@REF -> {repository, file, ref}. File names may
// contain '@' (nested@evil.yml) and refs may contain '@' and '.yml', but a file name
// never contains '/', and the refs GitHub puts here always do: the file ends at the
// last '@' before the ref's first '/' that follows a name ending .yml/.yaml.
function parseWorkflowRef(value) {
  if (typeof value !== 'string') return undefined;
  const first = value.indexOf('/');
  const second = first < 0 ? -1 : value.indexOf('/', first + 1);
  if (first <= 0 || second <= first + 1) return undefined;
  const repository = value.slice(0, second);
  let rest = value.slice(second + 1);
  if (!rest.startsWith(WORKFLOWS_DIR)) return undefined;
  rest = rest.slice(WORKFLOWS_DIR.length);
  const slash = rest.indexOf('/');
  const limit = slash < 0 ? rest.length : slash;
  let splitAt;
  for (let i = 0; i < limit; i++) {
    const head = rest.slice(0, i);
    if (rest[i] === '@' && (head.endsWith('.yml') || head.endsWith('.yaml'))) splitAt = i;
  }
  if (splitAt === undefined || splitAt + 1 >= rest.length) return undefined;
  return { repository, file: rest.slice(0, splitAt), ref: rest.slice(splitAt + 1) };
}

// A reusable workflow: the job runs a workflow file other than the top-level one.
function reusableWorkflow(claims) {
  if (!claims) return undefined;
  const { workflow_ref: caller, job_workflow_ref: job } = claims;
  if (typeof caller !== 'string' || typeof job !== 'string' || caller === job) return undefined;
  return { caller, job, callerRef: parseWorkflowRef(caller), jobRef: parseWorkflowRef(job) };
}

function tomlString(value) {
  return JSON.stringify(String(value));
}

// The [[policy]] table (trustpub's policy file format) that would accept this token, so
// that a refused maintainer can compare it with the registry's policy field by field.
function policyHint(claims) {
  if (!claims) return [];
  const lines = ['[[policy]]', 'name = "release"'];
  const iss = typeof claims.iss === 'string' ? claims.iss : '';
  if ('project_path' in claims) {
    lines.push('provider = "gitlab"');
    if (iss && iss !== 'https://gitlab.com') lines.push(`issuer = ${tomlString(iss)}`);
    lines.push('crates = ["<your crate>"]');
    lines.push(`project_path = ${tomlString(claims.project_path)}`);
    if (claims.namespace_id !== undefined) {
      lines.push(`namespace_id = ${tomlString(claims.namespace_id)}`);
    }
    const uri = typeof claims.ci_config_ref_uri === 'string' ? claims.ci_config_ref_uri : '';
    const start = uri.indexOf('//');
    const end = uri.lastIndexOf('@');
    if (start >= 0 && end > start) lines.push(`workflow = ${tomlString(uri.slice(start + 2, end))}`);
    if (claims.environment) lines.push(`environment = ${tomlString(claims.environment)}`);
    if (claims.ref_path) lines.push(`refs = [${tomlString(claims.ref_path)}]`);
    return lines;
  }
  lines.push('provider = "github"');
  if (iss && iss !== GITHUB_ISSUER) lines.push(`issuer = ${tomlString(iss)}`);
  lines.push('crates = ["<your crate>"]');
  if (claims.repository) lines.push(`repository = ${tomlString(claims.repository)}`);
  if (claims.repository_owner_id !== undefined) {
    lines.push(`repository_owner_id = ${tomlString(claims.repository_owner_id)}`);
  }
  const caller = parseWorkflowRef(claims.workflow_ref);
  if (caller) lines.push(`workflow = ${tomlString(caller.file)}`);
  if (claims.environment) lines.push(`environment = ${tomlString(claims.environment)}`);
  if (claims.ref) lines.push(`refs = [${tomlString(claims.ref)}]`);
  const reusable = reusableWorkflow(claims);
  if (reusable && reusable.jobRef) {
    lines.push('[policy.job_workflow]   # optional: require this reusable workflow');
    lines.push(`repository = ${tomlString(reusable.jobRef.repository)}`);
    lines.push(`workflow = ${tomlString(reusable.jobRef.file)}`);
  }
  return lines;
}

// Claims as aligned "name  value" lines, sorted by name.
function claimLines(claims) {
  if (!claims) return [];
  const names = Object.keys(claims).sort();
  const width = Math.max(...names.map((n) => n.length));
  return names.map((name) => {
    const value = claims[name];
    const shown = typeof value === 'string' ? value : JSON.stringify(value);
    return `${name.padEnd(width)}  ${shown}`;
  });
}

module.exports = {
  GITHUB_ISSUER,
  claimLines,
  decodeUnverified,
  parseWorkflowRef,
  policyHint,
  reusableWorkflow,
};
