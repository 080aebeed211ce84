// A page that follows a prototype's pipeline live, as a Statex frontend would: the generated client asks the
// status endpoint (with the access token), and the browser's own EventSource opens the answer's `events_url`
// (EventSource sends no Authorization header: the URL's short-lived token opens that one stream). When the
// server ends a stream, EventSource reconnects by itself with Last-Event-ID and gets only the later events.
//
// Open it as index.html?api=<API base URL>&prototype=<id>#<access token> (the fragment never leaves the browser).
// What it received is kept in `window.statexProgress`, for the browser test (tests/ai/test_events_in_a_browser.py).

import { client } from "./client/client.gen.js";
import { prototypesGet } from "./client/sdk.gen.js";
import type { PrototypeView } from "./client/types.gen.js";

/** The `event:` names of the stream (PrototypeEventView.kind); the last three end it. */
const KINDS = [
  "step_started",
  "step_finished",
  "verification",
  "fix_round",
  "approval_needed",
  "completed",
  "failed",
  "cancelled",
] as const;
const ENDINGS: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

export interface Received {
  id: string;
  kind: string;
  data: Record<string, unknown>;
}

export interface Progress {
  status: PrototypeView["status"] | null;
  eventsUrl: string | null;
  opened: number;
  events: Received[];
  ended: boolean;
  problem: string | null;
}

declare global {
  interface Window {
    statexProgress: Progress;
  }
}

/** The prototype's status through the generated client: typed, so an API change that breaks this fails tsc. */
async function status(apiBase: string, accessToken: string, prototypeId: string): Promise<PrototypeView> {
  client.setConfig({ baseUrl: apiBase, auth: () => accessToken });
  const { data, error } = await prototypesGet({ path: { prototype_id: prototypeId } });
  if (data === undefined) {
    throw new Error(`status: ${JSON.stringify(error)}`);
  }
  return data;
}

export async function follow(apiBase: string, accessToken: string, prototypeId: string): Promise<Progress> {
  const progress: Progress = { status: null, eventsUrl: null, opened: 0, events: [], ended: false, problem: null };
  window.statexProgress = progress;
  const view = await status(apiBase, accessToken, prototypeId);
  progress.status = view.status;
  progress.eventsUrl = view.events_url;
  const source = new EventSource(new URL(view.events_url, apiBase)); // relative to the API, not to this page
  const list = document.getElementById("events");
  source.onopen = () => {
    progress.opened += 1;
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && !progress.ended) {
      progress.problem = "the stream was refused"; // not a reconnect: e.g. 401 once the token has expired
    }
  };
  for (const kind of KINDS) {
    source.addEventListener(kind, (message: MessageEvent<string>) => {
      const received: Received = { id: message.lastEventId, kind, data: JSON.parse(message.data) };
      progress.events.push(received);
      const item = document.createElement("li");
      item.textContent = `${received.id} ${kind} ${String(received.data["step"] ?? "")}`;
      list?.append(item);
      if (ENDINGS.has(kind)) {
        progress.ended = true;
        source.close(); // otherwise EventSource would reconnect once the server closes the ended stream
      }
    });
  }
  return progress;
}

const query = new URLSearchParams(window.location.search);
const api = query.get("api");
const prototype = query.get("prototype");
if (api !== null && prototype !== null) {
  follow(api, window.location.hash.slice(1), prototype).catch((err: unknown) => {
    window.statexProgress = { ...window.statexProgress, problem: String(err) };
  });
}
