import type { Command } from 'commander';

/** Each area of the CLI registers its commands here. */
export type Register = (program: Command) => void;

export const registrations: Register[] = [];
