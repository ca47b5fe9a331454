import { celEnv, celList, celMap, isCelError, isCelList, isCelMap, isCelUint, parse, plan, type CelInput, type CelValue } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { CustodyError } from '@custody/core';

/**
 * A thin layer over @bufbuild/cel: expressions are parsed and planned once, then evaluated
 * many times against plain JSON-like bindings.
 */

const env = celEnv({ funcs: strings });

export type CelProgram = ((bindings: Record<string, CelInput>) => CelValue) & {
  /** The most evaluation steps the expression can take (celStepBound). */
  readonly steps: number;
};

type Expr = ReturnType<typeof parse>['expr'];

/** What a range the expression does not spell out (a list or map from the claims) is taken to hold. */
const UNKNOWN_RANGE = 1000;
/**
 * The most evaluation steps one expression may take by its static bound: about 20 ms of
 * evaluation. @bufbuild/cel has no cost budget of its own, and a policy is text from a tenant.
 */
export const MAX_CEL_STEPS = 200_000;

/**
 * A bound on the steps evaluating `e` takes: one per node, and each comprehension (all, exists,
 * exists_one, map, filter) times the size of its range, which is the length of a list or map
 * written in the expression, the bound of a map or filter it ranges over, or UNKNOWN_RANGE for
 * anything else (claims). Nested comprehensions multiply.
 */
export function celStepBound(e: Expr | undefined): number {
  if (!e) return 0;
  const k = e.exprKind;
  switch (k.case) {
    case 'comprehensionExpr': {
      const c = k.value;
      return 1 + celStepBound(c.iterRange) + celStepBound(c.accuInit) + rangeBound(c.iterRange) * (1 + celStepBound(c.loopCondition) + celStepBound(c.loopStep)) + celStepBound(c.result);
    }
    case 'callExpr':
      return k.value.args.reduce((n, a) => n + celStepBound(a), 1 + celStepBound(k.value.target));
    case 'listExpr':
      return k.value.elements.reduce((n, a) => n + celStepBound(a), 1);
    case 'structExpr':
      return k.value.entries.reduce((n, en) => n + celStepBound(en.keyKind.case === 'mapKey' ? en.keyKind.value : undefined) + celStepBound(en.value), 1);
    case 'selectExpr':
      return 1 + celStepBound(k.value.operand);
    default:
      return 1;
  }
}

function rangeBound(e: Expr | undefined): number {
  const k = e?.exprKind;
  if (k?.case === 'listExpr') return k.value.elements.length;
  if (k?.case === 'structExpr') return k.value.entries.length;
  // map() and filter() give at most as many elements as they range over.
  if (k?.case === 'comprehensionExpr') return rangeBound(k.value.iterRange);
  return UNKNOWN_RANGE;
}

/**
 * Parses and plans a CEL expression. Syntax errors become ERR_POLICY_INVALID with `what`
 * (e.g. `rules.my-rule.expr`) in the detail.
 */
/** Planned programs by expression text: the default rules are shared by every policy. */
const planned = new Map<string, { run: (ctx: Record<string, CelInput>) => unknown; steps: number }>();
const MAX_PLANNED = 2048;

export function compileCel(expr: string, what: string): CelProgram {
  const { run: program, steps } = planned.get(expr) ?? planCel(expr, what);
  const evaluate = (bindings: Record<string, CelInput>): CelValue => {
    let out: unknown;
    try {
      out = program(bindings);
    } catch (e) {
      throw new CelEvaluationError(e instanceof Error ? e.message : 'evaluation failed', e);
    }
    if (isCelError(out)) throw new CelEvaluationError(out.message, out);
    return out as CelValue;
  };
  return Object.assign(evaluate, { steps });
}

function planCel(expr: string, what: string): { run: (ctx: Record<string, CelInput>) => unknown; steps: number } {
  let run: (ctx: Record<string, CelInput>) => unknown;
  let steps: number;
  try {
    const parsed = parse(expr);
    steps = celStepBound(parsed.expr);
    run = plan(env, parsed);
  } catch (e) {
    throw new CustodyError('ERR_POLICY_INVALID', `CEL in ${what} does not parse: ${e instanceof Error ? e.message : 'syntax error'}`, {
      cause: e,
      detail: { where: what },
    });
  }
  if (steps > MAX_CEL_STEPS) {
    throw new CustodyError('ERR_POLICY_INVALID', `CEL in ${what} could take up to ${steps > 1e12 ? 'more than 10^12' : Math.round(steps)} evaluation steps, more than ${MAX_CEL_STEPS}: nest fewer comprehensions (all, exists, map, filter), or range over shorter lists`, {
      detail: { where: what, maxSteps: MAX_CEL_STEPS },
    });
  }
  const entry = { run, steps };
  if (planned.size >= MAX_PLANNED) planned.delete(planned.keys().next().value!);
  planned.set(expr, entry);
  return entry;
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
