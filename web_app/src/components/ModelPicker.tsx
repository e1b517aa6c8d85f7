import type { ModelInfo } from "../api";

interface ModelPickerProps {
  models: ModelInfo[] | null;
  current: string | null;
  switching: string | null;
  disabled: boolean;
  onSelect(name: string): void;
}

export function ModelPicker({ models, current, switching, disabled, onSelect }: ModelPickerProps) {
  if (models === null) {
    return (
      <div className="model-list model-list--loading" data-testid="model-list" aria-busy="true">
        Loading models…
      </div>
    );
  }
  if (models.length === 0) {
    return (
      <div className="model-list" data-testid="model-list">
        <p className="muted">The server lists no models.</p>
      </div>
    );
  }
  return (
    <div className="model-list" role="radiogroup" aria-label="Model" data-testid="model-list">
      {models.map((m) => {
        const available = m.available !== false;
        const isCurrent = m.name === current;
        const isSwitching = m.name === switching;
        return (
          <button
            key={m.name}
            type="button"
            role="radio"
            aria-checked={isCurrent}
            className={`model${isCurrent ? " model--current" : ""}${available ? "" : " model--unavailable"}`}
            data-testid={`model-option-${m.name}`}
            data-available={available}
            disabled={!available || disabled || switching !== null}
            title={available ? (m.path ?? m.name) : `Unavailable: ${m.reason ?? "no reason given"}`}
            onClick={() => onSelect(m.name)}
          >
            <span className="model__radio" aria-hidden="true" />
            <span className="model__body">
              <span className="model__name">
                {m.name}
                {available ? (
                  m.model_type && <span className="model__type">{m.model_type}</span>
                ) : (
                  <span className="model__type model__type--off">unavailable</span>
                )}
                {isSwitching && <span className="model__busy">loading…</span>}
              </span>
              {!available && (
                <span className="model__reason" data-testid={`model-reason-${m.name}`}>
                  {m.reason || "Unavailable"}
                </span>
              )}
            </span>
          </button>
        );
      })}
    </div>
  );
}
