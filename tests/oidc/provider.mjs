// A real, independent OpenID Provider for the sign-in tests: `oidc-provider` 8.x (a certified
// implementation), on plain HTTP loopback, with accounts whose claims are shaped like Pro Santé
// Connect's (SubjectNameID = "8" + RPPS, SubjectRefPro with the professional's exercices).
//
// Environment: OP_PORT (port), RP_REDIRECT_URI (the relying party's callback), RP_JWKS (public
// keys of the private_key_jwt client), OP_SIGNING_JWK (optional: the provider's own signing key,
// a private JWK, for tests that sign ID tokens of their own with it). Prints
// "listening <issuer>" once it serves.
//
// Test-only shortcuts: login completes at once with the account named by `login_hint` (default
// the doctor), and consent is implied. Nothing else is changed from the library's defaults.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const PORT = Number(process.env.OP_PORT ?? 4000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const REDIRECT_URI = process.env.RP_REDIRECT_URI ?? 'http://127.0.0.1:8080/callback';
const RP_JWKS = JSON.parse(process.env.RP_JWKS ?? '{"keys":[]}');
// A new signing key at every start (restarting the provider is how the tests rotate its keys),
// unless the test gives one.
const generated = () => {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'ES256', use: 'sig' };
};
const SIGNING_KEY = process.env.OP_SIGNING_JWK ? JSON.parse(process.env.OP_SIGNING_JWK) : generated();

const exercice = (profession, name, first) => ({
  codeProfession: profession,
  codeCategorieProfessionnelle: 'C',
  nomDexercice: name,
  prenomDexercice: first,
  activities: [{ codeModeExercice: 'S', codeSecteurDactivite: 'SA07', raisonSocialeSite: 'CDS BOURGANEUF' }],
});

// Accounts by `sub`; `acr` is what their login reaches (eidas1 = e-CPS or CPS card).
const ACCOUNTS = {
  'psc-dr-martin': {
    acr: 'eidas1',
    claims: {
      SubjectNameID: '810100000008', preferred_username: '810100000008',
      given_name: 'Paul', family_name: 'MARTIN',
      SubjectRefPro: { codeCivilite: 'DR', exercices: [exercice('10', 'MARTIN', 'Paul')] },
    },
  },
  // A login below the level the suite asks for.
  'psc-weak': {
    acr: 'eidas0',
    claims: {
      SubjectNameID: '810100000016', preferred_username: '810100000016',
      given_name: 'Anne', family_name: 'FAIBLE',
      SubjectRefPro: { codeCivilite: 'MME', exercices: [exercice('60', 'FAIBLE', 'Anne')] },
    },
  },
  // A professional of the national register whom no organisation of the suite lists.
  'psc-stranger': {
    acr: 'eidas1',
    claims: {
      SubjectNameID: '810100000024', preferred_username: '810100000024',
      given_name: 'Luc', family_name: 'INCONNU',
      SubjectRefPro: { codeCivilite: 'DR', exercices: [exercice('10', 'INCONNU', 'Luc')] },
    },
  },
};
const DEFAULT_ACCOUNT = 'psc-dr-martin';

const common = {
  redirect_uris: [REDIRECT_URI],
  response_types: ['code'],
  id_token_signed_response_alg: 'ES256',
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
};

const provider = new Provider(ISSUER, {
  clients: [
    { ...common, client_id: 'rp-basic', client_secret: 'rp-basic-secret',
      token_endpoint_auth_method: 'client_secret_basic' },
    // One registered authentication method per client in oidc-provider: a second client.
    { ...common, client_id: 'rp-pkjwt', token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256', jwks: RP_JWKS },
  ],
  clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
  pkce: { methods: ['S256'], required: () => true },
  acrValues: ['eidas0', 'eidas1'],
  scopes: ['openid', 'scope_all', 'offline_access'],
  claims: {
    openid: ['sub'],
    scope_all: ['SubjectNameID', 'SubjectRefPro', 'given_name', 'family_name', 'preferred_username'],
  },
  async findAccount(ctx, sub) {
    const account = ACCOUNTS[sub];
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { sub, ...account.claims }; } };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid scope_all offline_access');
    await grant.save();
    return grant;
  },
  features: { devInteractions: { enabled: false }, deviceFlow: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['test-only-cookie-key'] },
  jwks: { keys: [SIGNING_KEY] },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
});

const callback = provider.callback();
http.createServer(async (req, res) => {
  if (req.method !== 'GET' || !req.url.startsWith('/interaction/')) return callback(req, res);
  try {
    const { prompt, params } = await provider.interactionDetails(req, res);
    if (prompt.name !== 'login') throw new Error(`unexpected prompt ${prompt.name}`);
    const accountId = ACCOUNTS[params.login_hint] ? params.login_hint : DEFAULT_ACCOUNT;
    await provider.interactionFinished(req, res,
      { login: { accountId, acr: ACCOUNTS[accountId].acr, amr: ['pwd'] } },
      { mergeWithLastSubmission: false });
  } catch (error) {
    res.statusCode = 500;
    res.end(String(error));
  }
}).listen(PORT, '127.0.0.1', () => console.log(`listening ${ISSUER}`));
