export { startFakeUpstream, createFakeUpstreamApp, type FakeUpstream, type FakeUpstreamOptions } from './fake-upstream.js';
export { startTestGateway, simPolicyYaml, TEST_API_KEY, TEST_MEASUREMENT, type TestGateway, type TestGatewayOptions } from './gateway-fixture.js';
export { encodeGguf, gguf, GgufType, type GgufFile, type GgufMetadataValue, type GgufTensor } from './gguf-writer.js';
export { tinyLlamaGguf, tinyVocab, writeTinyLlamaGguf, TINY_LLAMA_BOS, TINY_LLAMA_EOS, TINY_LLAMA_UNK, type TinyLlamaOptions, type TinyVocab } from './tiny-llama.js';
export { bhttpChatRequest, postSealedRaw, publishedKeyConfig, sealedChunkedChat } from './bhttp-chat.js';
export { compositePolicyYaml, fixtureGpuMeasurements, fixtureGpuRootSha256 } from './gpu.js';
