export { startFakeUpstream, createFakeUpstreamApp, type FakeUpstream, type FakeUpstreamOptions } from './fake-upstream.js';
export { startTestGateway, simPolicyYaml, TEST_API_KEY, TEST_MEASUREMENT, type TestGateway, type TestGatewayOptions } from './gateway-fixture.js';
