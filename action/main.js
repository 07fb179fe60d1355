'use strict';
// Entry point of the action's main step (runs.main in action.yml).
const { main } = require('./lib/auth');
const { defaultContext } = require('./lib/runner');

main(defaultContext()).then((code) => {
  process.exitCode = code;
});
