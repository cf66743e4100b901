// A real OAuth 2.1 authorization server for the OAuth tests: node-oidc-provider (npm
// `oidc-provider`), on 127.0.0.1, issuing RFC 9068 JWT access tokens for burnlink through the
// client credentials grant with resource indicators (RFC 8707).
//
// Usage: node oidc_provider.mjs PROVIDER_MODULE PORT RESOURCE OUT_DIR [TLS_CERT TLS_KEY]
//   PROVIDER_MODULE  path of oidc-provider's lib/index.js (installed by scripts/test)
//   RESOURCE         burnlink's resource identifier (the default audience: its /mcp URL)
//   OUT_DIR          where the signing keys are kept, so a test can forge tokens with them:
//                    keys.json (every private JWK, newest first), and the newest key as
//                    key.der (PKCS#1 private key) and public.pem (SPKI public key)
//   TLS_CERT/KEY     PEM files: serve HTTPS (the issuer is then https://127.0.0.1:PORT)
// Started again with the same OUT_DIR, it rotates its keys: a new key `test-key-N+1` signs,
// and the earlier ones stay published, as an issuer does during a rotation.
// Prints one line `ready ISSUER` on stdout once it listens.
//
// Clients (secret = `<id>-secret`, client_secret_basic or client_secret_post):
//   agent   every burnlink scope;   reader  links:read only;
//   pinned  every scope, and a `burnlink_session: "s1"` claim in its tokens.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modulePath, port, resource, outDir, tlsCert, tlsKey] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(modulePath).href);

const SCOPES = 'links:download links:upload links:read links:revoke';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
writeFileSync(join(outDir, 'key.der'), privateKey.export({ format: 'der', type: 'pkcs1' }));
writeFileSync(join(outDir, 'public.pem'), publicKey.export({ format: 'pem', type: 'spki' }));
const keysFile = join(outDir, 'keys.json');
const earlier = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : [];
const jwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-key-${earlier.length + 1}`,
  alg: 'RS256',
  use: 'sig',
};
// The first key of its algorithm is the one the provider signs with.
const keys = [jwk, ...earlier];
writeFileSync(keysFile, JSON.stringify(keys));

const client = (id, scope, method) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: method,
  scope,
});

const issuer = `${tlsCert ? 'https' : 'http'}://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    client('agent', SCOPES, 'client_secret_basic'),
    client('agent-post', SCOPES, 'client_secret_post'),
    client('reader', 'links:read', 'client_secret_basic'),
    client('pinned', SCOPES, 'client_secret_basic'),
  ],
  jwks: { keys },
  scopes: SCOPES.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPES,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) =>
    token.clientId === 'pinned' ? { burnlink_session: 's1' } : undefined,
});
provider.proxy = false;
const ready = () => process.stdout.write(`ready ${issuer}\n`);
const server = tlsCert
  ? createServer({ cert: readFileSync(tlsCert), key: readFileSync(tlsKey) }, provider.callback())
      .listen(Number(port), '127.0.0.1', ready)
  : provider.listen(Number(port), '127.0.0.1', ready);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
