import type { Command } from 'commander';
import { register as attest } from './attest.js';
import { register as policy } from './policy.js';

/** Each area of the CLI registers its commands here. */
export type Register = (program: Command) => void;

export const registrations: Register[] = [attest, policy];
