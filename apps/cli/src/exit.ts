/** Exit codes shared by every command. */
export const EXIT_OK = 0;
/** The thing was checked and did not verify (evidence, proof, policy). */
export const EXIT_NOT_VERIFIED = 1;
/** Bad input or usage: nothing was checked. */
export const EXIT_BAD_INPUT = 2;
/** A dependency (service, device) was unavailable; safe to retry. */
export const EXIT_UNAVAILABLE = 3;
