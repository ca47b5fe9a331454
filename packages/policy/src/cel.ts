import { celEnv, celList, celMap, isCelError, isCelList, isCelMap, isCelUint, parse, plan, type CelInput, type CelValue } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { CustodyError } from '@custody/core';

/**
 * A thin layer over @bufbuild/cel: expressions are parsed and planned once, then evaluated
 * many times against plain JSON-like bindings.
 */

const env = celEnv({ funcs: strings });

export type CelProgram = (bindings: Record<string, CelInput>) => CelValue;

/**
 * Parses and plans a CEL expression. Syntax errors become ERR_POLICY_INVALID with `what`
 * (e.g. `rules.my-rule.expr`) in the detail.
 */
/** Planned programs by expression text: the default rules are shared by every policy. */
const planned = new Map<string, (ctx: Record<string, CelInput>) => unknown>();
const MAX_PLANNED = 2048;

export function compileCel(expr: string, what: string): CelProgram {
  let run = planned.get(expr);
  if (!run) run = planCel(expr, what);
  const program = run;
  return (bindings) => {
    let out: unknown;
    try {
      out = program(bindings);
    } catch (e) {
      throw new CelEvaluationError(e instanceof Error ? e.message : 'evaluation failed', e);
    }
    if (isCelError(out)) throw new CelEvaluationError(out.message, out);
    return out as CelValue;
  };
}

function planCel(expr: string, what: string): (ctx: Record<string, CelInput>) => unknown {
  let run: (ctx: Record<string, CelInput>) => unknown;
  try {
    run = plan(env, parse(expr));
  } catch (e) {
    throw new CustodyError('ERR_POLICY_INVALID', `CEL in ${what} does not parse: ${e instanceof Error ? e.message : 'syntax error'}`, {
      cause: e,
      detail: { where: what },
    });
  }
  if (planned.size >= MAX_PLANNED) planned.delete(planned.keys().next().value!);
  planned.set(expr, run);
  return run;
}

/** A CEL expression that failed at run time (missing field, type mismatch, ...). */
export class CelEvaluationError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'CelEvaluationError';
  }
}

/**
 * Converts a JSON-like value into CEL values once, up front: objects become CEL maps and arrays
 * CEL lists (the evaluator would otherwise rebuild a map from a plain object on every field
 * access); safe integers become CEL ints (bigint) so that `claims.tcb.components.snp >= 8` and
 * `string(x)` behave as people expect; other numbers stay doubles; undefined members are
 * dropped (so `has()` is false for them).
 */
export function toCelInput(v: unknown, depth = 0): CelInput {
  if (depth > 64) throw new CustodyError('ERR_INPUT_MALFORMED', 'claims nest too deeply');
  if (v === null) return null;
  switch (typeof v) {
    case 'boolean':
    case 'string':
      return v;
    case 'number':
      return Number.isSafeInteger(v) ? BigInt(v) : v;
    case 'bigint':
      return v;
    case 'object': {
      if (v instanceof Uint8Array) return v;
      if (Array.isArray(v)) return celList(v.map((x) => toCelInput(x, depth + 1)));
      const out = new Map<string, CelInput>();
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        if (x !== undefined && typeof x !== 'function' && typeof x !== 'symbol') out.set(k, toCelInput(x, depth + 1));
      }
      return celMap(out);
    }
    default:
      return null;
  }
}

/** Renders a CEL result for a human: strings as they are, lists joined, others as JSON-ish text. */
export function celToText(v: CelValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  if (isCelList(v)) return [...v].map((x) => celToText(x)).join(', ');
  if (isCelMap(v)) return [...v.entries()].map(([k, x]) => `${celToText(isCelUint(k) ? k.value : k)}: ${celToText(x)}`).join(', ');
  if (isCelUint(v)) return String(v.value);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return 'a value';
}

/** A compiled CEL condition that never throws at evaluation time. */
export interface CelCondition {
  readonly expr: string;
  /** True only when the expression evaluates to exactly `true`; errors and non-booleans are false (fail closed). */
  evaluate(variables: Record<string, unknown>): { ok: boolean; error?: string };
}

/**
 * Compiles a boolean CEL condition over plain JSON-like variables, for callers outside the
 * appraisal (e.g. a key release policy over EAR claims: `ear.submods.cpu0['ear.status'] ==
 * 'affirming'`). Syntax errors: ERR_POLICY_INVALID.
 */
export function compileCondition(expr: string, what = 'condition'): CelCondition {
  if (typeof expr !== 'string' || expr.length === 0 || expr.length > 8192) {
    throw new CustodyError('ERR_POLICY_INVALID', `${what} must be a CEL expression of 1 to 8192 characters`);
  }
  const program = compileCel(expr, what);
  return {
    expr,
    evaluate(variables) {
      try {
        const bindings: Record<string, CelInput> = {};
        for (const [k, v] of Object.entries(variables)) bindings[k] = toCelInput(v);
        const out = program(bindings);
        if (out === true) return { ok: true };
        return typeof out === 'boolean' ? { ok: false } : { ok: false, error: 'the condition did not give a bool' };
      } catch (e) {
        return { ok: false, error: e instanceof Error ? e.message : 'evaluation failed' };
      }
    },
  };
}
