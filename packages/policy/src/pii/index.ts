export { PiiEngine, MaskVault, StreamRestorer, type PiiAction, type PiiPolicy, type PiiFinding, type PiiResult } from './engine.js';
export { StreamRedactor, OUTPUT_HOLD_CHARS, OUTPUT_STEP_CHARS } from './stream-redactor.js';
export { PII_CATEGORIES, BUILTIN_DETECTORS, detectAll, type BuiltinCategory, type Detection, type Detector, type CustomPattern } from './detectors.js';
export { luhnValid, ibanValid, ssnValid, ipv4Valid, ipv6Valid } from './checksums.js';
