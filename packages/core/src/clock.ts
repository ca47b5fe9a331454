/** Injected time source; verification code never reads the wall clock itself. */
export type Clock = () => Date;

// The one place the wall clock is read; services inject it, verifiers receive `now`.
// eslint-disable-next-line no-restricted-syntax
export const systemClock: Clock = () => new Date();

export function fixedClock(at: Date | string): Clock {
  const d = typeof at === 'string' ? new Date(at) : at;
  return () => new Date(d.getTime());
}
