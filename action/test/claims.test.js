'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const {
  claimLines,
  decodeUnverified,
  parseWorkflowRef,
  policyHint,
  reusableWorkflow,
} = require('../lib/claims');
const { fakeJwt } = require('./fake');

test('decodeUnverified returns the payload', () => {
  const claims = decodeUnverified(fakeJwt({ environment: 'release' }));
  assert.equal(claims.environment, 'release');
  assert.equal(claims.repository, 'octo-org/octo-lib');
});

test('decodeUnverified returns undefined for anything but a JWT object payload', () => {
  for (const value of ['', 'a.b', 'a.!!!.c', `a.${Buffer.from('[1]').toString('base64url')}.c`]) {
    assert.equal(decodeUnverified(value), undefined, value);
  }
});

test('parseWorkflowRef splits repository, file and ref', () => {
  assert.deepEqual(parseWorkflowRef('o/r/.github/workflows/release.yml@refs/tags/v1'), {
    repository: 'o/r',
    file: 'release.yml',
    ref: 'refs/tags/v1',
  });
});

test('parseWorkflowRef keeps @ inside file names and refs apart', () => {
  assert.equal(
    parseWorkflowRef('o/r/.github/workflows/nested@evil.yml@refs/heads/main').file,
    'nested@evil.yml',
  );
  assert.deepEqual(parseWorkflowRef('o/r/.github/workflows/a.yaml@refs/heads/x@y.yml'), {
    repository: 'o/r',
    file: 'a.yaml',
    ref: 'refs/heads/x@y.yml',
  });
});

test('parseWorkflowRef refuses other shapes', () => {
  for (const value of [
    undefined,
    'o/r/workflows/a.yml@refs/heads/main',
    'o/.github/workflows/a.yml@refs/heads/main',
    'o/r/.github/workflows/a.txt@refs/heads/main',
    'o/r/.github/workflows/a.yml@',
  ]) {
    assert.equal(parseWorkflowRef(value), undefined, String(value));
  }
});

test('reusableWorkflow is found only when the two refs differ', () => {
  const same = 'o/r/.github/workflows/a.yml@refs/heads/main';
  assert.equal(reusableWorkflow({ workflow_ref: same, job_workflow_ref: same }), undefined);
  const found = reusableWorkflow({
    workflow_ref: same,
    job_workflow_ref: 'o/shared/.github/workflows/publish.yml@refs/heads/main',
  });
  assert.equal(found.callerRef.file, 'a.yml');
  assert.equal(found.jobRef.repository, 'o/shared');
});

test('policyHint for GitHub names the fields a policy matches', () => {
  const hint = policyHint({
    iss: 'https://token.actions.githubusercontent.com',
    repository: 'octo-org/octo-lib',
    repository_owner_id: '131804563',
    workflow_ref: 'octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1',
    job_workflow_ref: 'octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1',
    ref: 'refs/tags/v1',
    environment: 'release',
  });
  assert.deepEqual(hint, [
    '[[policy]]',
    'name = "release"',
    'provider = "github"',
    'crates = ["<your crate>"]',
    'repository = "octo-org/octo-lib"',
    'repository_owner_id = "131804563"',
    'workflow = "release.yml"',
    'environment = "release"',
    'refs = ["refs/tags/v1"]',
  ]);
});

test('policyHint names a non-canonical issuer and a reusable workflow', () => {
  const hint = policyHint({
    iss: 'http://127.0.0.1:8090',
    repository: 'o/r',
    workflow_ref: 'o/r/.github/workflows/caller.yml@refs/heads/main',
    job_workflow_ref: 'o/shared/.github/workflows/publish.yml@refs/heads/main',
  });
  assert.ok(hint.includes('issuer = "http://127.0.0.1:8090"'));
  assert.ok(hint.includes('workflow = "caller.yml"'));
  assert.ok(hint.includes('repository = "o/shared"'));
  assert.ok(hint.includes('workflow = "publish.yml"'));
});

test('policyHint for GitLab uses the project path and the CI config path', () => {
  const hint = policyHint({
    iss: 'https://gitlab.com',
    project_path: 'g/sub/p',
    namespace_id: '42',
    ci_config_ref_uri: 'gitlab.com/g/sub/p//ci/release.yml@refs/tags/v1',
    ref_path: 'refs/tags/v1',
  });
  assert.deepEqual(hint, [
    '[[policy]]',
    'name = "release"',
    'provider = "gitlab"',
    'crates = ["<your crate>"]',
    'project_path = "g/sub/p"',
    'namespace_id = "42"',
    'workflow = "ci/release.yml"',
    'refs = ["refs/tags/v1"]',
  ]);
});

test('policyHint quotes values as TOML strings', () => {
  const hint = policyHint({ repository: 'o/"r"' });
  assert.ok(hint.includes('repository = "o/\\"r\\""'));
});

test('claimLines aligns sorted names and shows non-strings as JSON', () => {
  assert.deepEqual(claimLines({ sub: 'x', aud: 'a', runner_id: 5 }), [
    'aud        a',
    'runner_id  5',
    'sub        x',
  ]);
});
