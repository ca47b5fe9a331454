#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registrations } from './commands/index.js';
import { EXIT_BAD_INPUT } from './exit.js';

const program = new Command();
program
  .name('custody')
  .description('Custody: a confidential-computing control plane for AI.\nVerify TEE evidence, release keys only to attested code, and keep a witnessed log of every decision.')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

for (const register of registrations) register(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(0);
    process.exit(EXIT_BAD_INPUT);
  }
  throw e;
}
