#!/usr/bin/env node
import { CommanderError } from 'commander';
import { registrations } from './commands/index.js';
import { EXIT_BAD_INPUT } from './exit.js';
import { CustodyCommand } from './output.js';

// Every subcommand is a CustodyCommand too (createCommand): with --json, its usage errors are JSON.
const program = new CustodyCommand();
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
