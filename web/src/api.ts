// The calls to the suite: one gRPC-Web transport to the page's own origin (the gateway), and the
// session's tokens, kept in memory only (a reload signs in again; nothing is written to storage).

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AuthService, type Tokens } from "./gen/telehealth/v1/auth_pb";
import { Role } from "./gen/telehealth/v1/access_pb";

/** Who is signed in, from the membership chosen at sign-in. */
export interface Identity {
  subject: string;
  orgId: string;
  roles: Role[];
  givenName: string;
  familyName: string;
  specialty: string;
}

let tokens: Tokens | undefined;
let identity: Identity | undefined;
let refreshTimer: number | undefined;
const listeners = new Set<() => void>();

const authorise: Interceptor = (next) => async (req) => {
  // `Refresh` is answered on the device certificate alone: no access token (it may be expired).
  const isRefresh = req.method.name === "Refresh";
  if (tokens && !isRefresh) req.header.set("authorization", `Bearer ${tokens.accessToken}`);
  try {
    return await next(req);
  } catch (error) {
    // An access token refused (expired while the tab slept): one refresh, one retry.
    if (tokens && !isRefresh && ConnectError.from(error).code === Code.Unauthenticated && !req.stream) {
      await refresh();
      req.header.set("authorization", `Bearer ${tokens.accessToken}`);
      return await next(req);
    }
    throw error;
  }
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [authorise],
});

const clients = new Map<DescService, Client<DescService>>();

/** The client of one service of the contract. */
export function client<S extends DescService>(service: S): Client<S> {
  let made = clients.get(service);
  if (!made) {
    made = createClient(service, transport);
    clients.set(service, made);
  }
  return made as Client<S>;
}

export function currentIdentity(): Identity | undefined {
  return identity;
}

export function hasRole(role: Role): boolean {
  return identity?.roles.includes(role) ?? false;
}

/** Called when the session starts or ends. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function startSession(next: Tokens, who: Identity): void {
  tokens = next;
  identity = who;
  scheduleRefresh();
  listeners.forEach((listener) => listener());
}

export async function signOut(): Promise<void> {
  try {
    if (tokens) await client(AuthService).signOut({});
  } finally {
    endSession();
  }
}

function endSession(): void {
  tokens = undefined;
  identity = undefined;
  window.clearTimeout(refreshTimer);
  listeners.forEach((listener) => listener());
}

// Refreshes at two thirds of the access token's life, so calls never wait for it.
function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  if (!tokens?.accessTokenExpireTime) return;
  const left = timestampMs(tokens.accessTokenExpireTime) - Date.now();
  refreshTimer = window.setTimeout(() => void refresh().catch(endSessionOnRefusal), Math.max(left * 0.66, 5_000));
}

let refreshing: Promise<void> | undefined;

async function refresh(): Promise<void> {
  if (!tokens) throw new ConnectError("Session terminée", Code.Unauthenticated);
  // One refresh at a time: a refresh token works once, a second use would end the session.
  refreshing ??= (async () => {
    try {
      const answer = await client(AuthService).refresh({ refreshToken: tokens!.refreshToken });
      if (!answer.tokens) throw new ConnectError("Réponse sans jetons", Code.Internal);
      tokens = answer.tokens;
      scheduleRefresh();
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

function endSessionOnRefusal(error: unknown): void {
  if (ConnectError.from(error).code === Code.Unauthenticated) endSession();
  else scheduleRefresh();
}
