// Server-Sent Events as the text/event-stream format spells them (id:, event:, data:, blank
// line), parsed incrementally from the chunks a fetch body gives.

export interface ServerEvent {
  id: string;
  event: string;
  data: string;
}

export class SseParser {
  private buffer = '';
  private id = '';
  private event = '';
  private data: string[] = [];
  /** The id of the last whole event: what Last-Event-ID resumes from. */
  lastId = '';

  push(chunk: string, emit: (event: ServerEvent) => void): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.search(/\r?\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + (this.buffer[newline] === '\r' ? 2 : 1));
      if (line === '') {
        if (this.data.length > 0) {
          if (this.id) this.lastId = this.id;
          emit({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
        }
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') this.id = value;
      else if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
    }
  }
}
