import { describe, expect, it } from 'vitest';
import { checkServiceUrl } from './service-url.js';

describe('checkServiceUrl', () => {
  it.each([
    ['http://127.0.0.1:8444', 'http://127.0.0.1:8444/'],
    ['https://gw.example/custody/', 'https://gw.example/custody/'],
    [new URL('https://gw.example/a'), 'https://gw.example/a'],
  ])('takes %s', (value, href) => {
    expect(checkServiceUrl(value, '--gateway').href).toBe(href);
  });

  it.each([
    ['gw.example', 'is not a URL'],
    ['ftp://gw.example', 'must be an http:// or https:// URL'],
    ['file:///etc/passwd', 'must be an http:// or https:// URL'],
    ['https://admin:s3cret@gw.example', 'must not carry credentials'],
    ['https://:s3cret@gw.example', 'must not carry credentials'],
    ['https://gw.example/?tenant=a', 'must not have a query'],
    ['https://gw.example/?', 'must not have a query'],
    ['https://gw.example/#', 'must not have a query'],
    ['https://gw.example/#frag', 'must not have a query'],
  ])('refuses %s with ERR_USAGE, naming the setting and never the value', (value, why) => {
    let thrown: unknown;
    try {
      checkServiceUrl(value, '--broker');
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'ERR_USAGE' });
    const message = (thrown as Error).message;
    expect(message).toContain('--broker');
    expect(message).toContain(why);
    expect(message).not.toContain('s3cret');
    expect(message).not.toContain('gw.example');
    expect((thrown as Error).cause).toBeUndefined();
  });
});
