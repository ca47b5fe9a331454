// Vitest setup: property tests without an explicit seed use one fixed seed, so CI is repeatable.
// Set FUZZ_SEED (and FUZZ_RUNS where a test reads it) to explore further locally.
import fc from 'fast-check';

fc.configureGlobal({ seed: Number(process.env.FUZZ_SEED ?? 20261126) });
