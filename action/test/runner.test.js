'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');

const { ActionError, Runner, escapeData, escapeProperty } = require('../lib/runner');
const { fakeContext, parseFileCommands } = require('./fake');

test('workflow command data escapes %, CR and LF', () => {
  assert.equal(escapeData('50% a\r\nb'), '50%25 a%0D%0Ab');
});

test('workflow command properties also escape : and ,', () => {
  assert.equal(escapeProperty('a:b,c%'), 'a%3Ab%2Cc%25');
});

test('commands carry escaped properties and message', () => {
  const f = fakeContext();
  new Runner(f.ctx).warning('line 1\nline 2', { title: 'T: x, y' });
  assert.equal(f.stdout(), '::warning title=T%3A x%2C y::line 1%0Aline 2\n');
});

test('mask registers every non-empty line of a value', () => {
  const f = fakeContext();
  new Runner(f.ctx).mask('one\n\ntwo');
  assert.deepEqual(f.lines(), ['::add-mask::one', '::add-mask::two']);
});

test('inputs come from INPUT_ variables, trimmed', () => {
  const f = fakeContext({ env: { INPUT_URL: '  https://r.example \n', INPUT_MY_INPUT: 'x' } });
  const runner = new Runner(f.ctx);
  assert.equal(runner.input('url'), 'https://r.example');
  assert.equal(runner.input('my input'), 'x');
  assert.equal(runner.input('absent'), '');
});

test('a missing required input is an ActionError', () => {
  const runner = new Runner(fakeContext().ctx);
  assert.throws(() => runner.input('url', { required: true }), ActionError);
});

test('outputs, state and variables are written as delimited blocks to the runner files', () => {
  const f = fakeContext();
  const runner = new Runner(f.ctx);
  runner.setOutput('token', 'abc');
  runner.setOutput('multi', 'a\nb');
  runner.saveState('token', 'abc');
  runner.exportVariable('NAME', 'v');
  assert.equal(f.files['/runner/output'].split('\n')[0], 'token<<ghadelimiter_uuid-1');
  assert.deepEqual(parseFileCommands(f.files['/runner/output']), { token: 'abc', multi: 'a\nb' });
  assert.deepEqual(parseFileCommands(f.files['/runner/state']), { token: 'abc' });
  assert.deepEqual(parseFileCommands(f.files['/runner/env']), { NAME: 'v' });
});

test('a value containing the delimiter is refused rather than written', () => {
  const f = fakeContext();
  const runner = new Runner(f.ctx);
  assert.throws(() => runner.setOutput('x', 'a\nghadelimiter_uuid-1\ninjected<<y'), ActionError);
  assert.equal(f.files['/runner/output'], undefined);
});

test('writing without GITHUB_OUTPUT explains that a runner is needed', () => {
  const f = fakeContext({ env: { GITHUB_OUTPUT: '' } });
  assert.throws(() => new Runner(f.ctx).setOutput('x', 'y'), /GITHUB_OUTPUT is not set/);
});

test('state is read from STATE_ variables', () => {
  const f = fakeContext({ env: { STATE_token: 'abc' } });
  assert.equal(new Runner(f.ctx).state('token'), 'abc');
  assert.equal(new Runner(f.ctx).state('url'), '');
});
