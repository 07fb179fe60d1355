'use strict';
// Entry point of the action's post step (runs.post in action.yml): revoke the token.
const { post } = require('./lib/auth');
const { defaultContext } = require('./lib/runner');

post(defaultContext()).then((code) => {
  process.exitCode = code;
});
