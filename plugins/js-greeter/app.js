// js-greeter: the `hello` plugin written in JavaScript, plus a follow-up job.
//
// - `js.greet` `{"name": "Ada"}` -> output `Hello, Ada!`; enqueues
//   `js.greeted` `{"name": "Ada"}`, written only if this job succeeds.
// - `js.greeted` `{"name": "Ada"}` -> logs through the host; output
//   `Ada was greeted`.
//
// A payload that is not JSON is fatal: thrown as the `fatal` case of the
// WIT `failure` variant, it dead-letters the job at once. Built by
// scripts/build-plugins with componentize-js:
//
//   componentize-js app.js -w wit -n plugin -d http fetch-event -o js-greeter.wasm

import { enqueue, log } from 'jobhost:plugin/host@0.2.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// `result<_, failure>` errors are thrown as the variant itself: `{ tag, val }`.
const fatal = (reason) => ({ tag: 'fatal', val: reason });
const retry = (reason) => ({ tag: 'retry', val: reason });

function nameOf(job) {
  const text = decoder.decode(job.payload).trim();
  if (text === '') return 'world';
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw fatal(`payload is not JSON: ${error.message}`);
  }
  const name = value !== null && typeof value === 'object' ? value.name : undefined;
  return typeof name === 'string' && name !== '' ? name : 'world';
}

function greet(job) {
  const name = nameOf(job);
  try {
    enqueue('js.greeted', encoder.encode(JSON.stringify({ name })));
  } catch (error) {
    // An imported function's `err` arrives as an exception whose `payload` is the string.
    throw retry(`enqueue js.greeted: ${error.payload ?? error}`);
  }
  return encoder.encode(`Hello, ${name}!`);
}

function greeted(job) {
  const name = nameOf(job);
  log('info', `${name} greeted`, [['attempt', String(job.attempt)]]);
  return encoder.encode(`${name} was greeted`);
}

export const handler = {
  describe() {
    return { name: 'js-greeter', version: '0.1.0', handles: ['js.greet', 'js.greeted'] };
  },

  handle(job) {
    switch (job.jobType) {
      case 'js.greet':
        return greet(job);
      case 'js.greeted':
        return greeted(job);
      default:
        throw fatal(`js-greeter does not handle ${job.jobType}`);
    }
  },
};
