import type { Command } from 'commander';
import { register as attest } from './attest.js';
import { register as policy } from './policy.js';
import { register as up } from './up.js';
import { register as keys } from './keys.js';
import { register as broker } from './broker.js';
import { register as fetchKey } from './fetch-key.js';
import { register as log } from './log.js';
import { register as witness } from './witness.js';
import { register as gateway } from './gateway.js';
import { register as receipt } from './receipt.js';
import { register as model } from './model.js';

/** Each area of the CLI registers its commands here. */
export type Register = (program: Command) => void;

export const registrations: Register[] = [up, attest, policy, keys, broker, fetchKey, log, witness, gateway, model, receipt];
