'use strict';
// The runner's side of the contract, without any toolkit: workflow commands on stdout,
// inputs and state from the environment, outputs/state/variables through the files the
// runner names in GITHUB_OUTPUT, GITHUB_STATE and GITHUB_ENV.

const crypto = require('node:crypto');
const fs = require('node:fs');

function escapeData(value) {
  return String(value).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(value) {
  return escapeData(value).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

// Everything the action touches outside itself, so that tests can replace each piece.
function defaultContext() {
  return {
    env: process.env,
    fetch: (...args) => globalThis.fetch(...args),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    write: (text) => process.stdout.write(text),
    appendFile: (path, text) => fs.appendFileSync(path, text, { encoding: 'utf8' }),
    random: Math.random,
    uuid: () => crypto.randomUUID(),
  };
}

class Runner {
  constructor(ctx) {
    this.ctx = ctx;
  }

  command(name, message, properties = {}) {
    const props = Object.entries(properties)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${k}=${escapeProperty(v)}`)
      .join(',');
    this.ctx.write(`::${name}${props ? ' ' + props : ''}::${escapeData(message)}\n`);
  }

  // The runner replaces the value with *** in every later line of the log. Secrets are
  // single-line; a multi-line value is masked line by line, as the runner expects.
  mask(value) {
    for (const line of String(value).split(/\r?\n/)) {
      if (line.trim()) this.command('add-mask', line);
    }
  }

  info(message = '') {
    this.ctx.write(`${message}\n`);
  }

  debug(message) {
    this.command('debug', message);
  }

  notice(message, properties) {
    this.command('notice', message, properties);
  }

  warning(message, properties) {
    this.command('warning', message, properties);
  }

  error(message, properties) {
    this.command('error', message, properties);
  }

  group(title) {
    this.command('group', title);
  }

  endGroup() {
    this.command('endgroup', '');
  }

  input(name, { required = false } = {}) {
    const key = `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
    const value = (this.ctx.env[key] || '').trim();
    if (required && !value) {
      throw new ActionError(`Input required and not supplied: ${name}`);
    }
    return value;
  }

  state(name) {
    return (this.ctx.env[`STATE_${name}`] || '').trim();
  }

  setOutput(name, value) {
    this.#fileCommand('GITHUB_OUTPUT', name, value);
  }

  saveState(name, value) {
    this.#fileCommand('GITHUB_STATE', name, value);
  }

  exportVariable(name, value) {
    this.#fileCommand('GITHUB_ENV', name, value);
  }

  // Markdown for the job's summary page (GITHUB_STEP_SUMMARY). Outside a runner that
  // offers one, there is nowhere to write it: returns false.
  summary(markdown) {
    const path = this.ctx.env.GITHUB_STEP_SUMMARY;
    if (!path) return false;
    this.ctx.appendFile(path, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
    return true;
  }

  // name<<DELIMITER / value / DELIMITER: a random delimiter that appears in neither name
  // nor value, so a value cannot end the block early and inject other entries.
  #fileCommand(variable, name, value) {
    const path = this.ctx.env[variable];
    if (!path) {
      throw new ActionError(
        `${variable} is not set: this action must run inside a GitHub Actions job ` +
          '(or a runner-compatible environment).',
      );
    }
    const text = String(value);
    const delimiter = `ghadelimiter_${this.ctx.uuid()}`;
    if (name.includes(delimiter) || text.includes(delimiter)) {
      throw new ActionError(`Unexpected input: ${name} contains the file-command delimiter`);
    }
    this.ctx.appendFile(path, `${name}<<${delimiter}\n${text}\n${delimiter}\n`);
  }
}

// A failure with a message written for the user: shown as is, without a stack trace.
class ActionError extends Error {
  constructor(message, { title, details = [] } = {}) {
    super(message);
    this.name = 'ActionError';
    this.title = title;
    this.details = details;
  }
}

module.exports = { ActionError, Runner, defaultContext, escapeData, escapeProperty };
