"""Settings: performance, per-mode sampling and system prompts, appearance. Stored through core settings."""

from __future__ import annotations

import copy

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.limits import max_threads
from app.core.llm.bindings import gpu_offload_supported
from app.core.llm.engine import physical_cores
from app.core.modes import Mode, preset_for
from app.core.settings import THEMES, Settings

CONTEXT_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]


class ModeEditor(QWidget):
    def __init__(self, mode: Mode, overrides: dict[str, object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode
        preset = preset_for(mode, overrides)
        form = QFormLayout(self)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(preset.sampling.temperature)
        self.temperature.setAccessibleName(f"{mode.label} temperature")
        self.temperature.setToolTip("0 always picks the most likely word; higher values vary more.")
        form.addRow("Temperature", self.temperature)
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.05, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(preset.sampling.top_p)
        self.top_p.setAccessibleName(f"{mode.label} top-p")
        form.addRow("Top-p", self.top_p)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(16, 32768)
        self.max_tokens.setValue(preset.sampling.max_tokens)
        self.max_tokens.setAccessibleName(f"{mode.label} maximum reply length")
        form.addRow("Longest reply (tokens)", self.max_tokens)
        self.system_prompt = QPlainTextEdit(preset.system_prompt)
        self.system_prompt.setAccessibleName(f"{mode.label} system prompt")
        form.addRow("System prompt", self.system_prompt)

    def overrides(self) -> dict[str, object]:
        """Only what differs from the preset, so later preset improvements still reach the user."""
        preset = preset_for(self.mode)
        changed: dict[str, object] = {}
        if abs(self.temperature.value() - preset.sampling.temperature) > 1e-9:
            changed["temperature"] = round(self.temperature.value(), 3)
        if abs(self.top_p.value() - preset.sampling.top_p) > 1e-9:
            changed["top_p"] = round(self.top_p.value(), 3)
        if self.max_tokens.value() != preset.sampling.max_tokens:
            changed["max_tokens"] = self.max_tokens.value()
        prompt = self.system_prompt.toPlainText().strip()
        if prompt and prompt != preset.system_prompt:
            changed["system_prompt"] = prompt
        return changed


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self._original = settings
        layout = QVBoxLayout(self)

        performance = QGroupBox("Performance")
        form = QFormLayout(performance)
        self.threads = QSpinBox()
        self.threads.setRange(0, max_threads())  # the range settings.load accepts
        self.threads.setSpecialValueText(f"Automatic ({physical_cores()} physical cores)")
        self.threads.setValue(settings.threads)
        self.threads.setAccessibleName("CPU threads")
        form.addRow("CPU threads", self.threads)
        self.context_size = QComboBox()
        self.context_size.setAccessibleName("Context size")
        for size in CONTEXT_SIZES:
            self.context_size.addItem(f"{size:,} tokens", size)
        index = self.context_size.findData(settings.context_size)
        if index < 0:
            self.context_size.addItem(f"{settings.context_size:,} tokens", settings.context_size)
            index = self.context_size.count() - 1
        self.context_size.setCurrentIndex(index)
        form.addRow("Context size", self.context_size)
        form.addRow(QLabel("A larger context remembers more of the conversation but needs more memory."))
        self.gpu_layers: QSpinBox | None = None
        if gpu_offload_supported():
            self.gpu_layers = QSpinBox()
            self.gpu_layers.setRange(-1, 999)
            self.gpu_layers.setSpecialValueText("All layers")
            self.gpu_layers.setValue(settings.gpu_layers)
            self.gpu_layers.setAccessibleName("Layers on the GPU")
            form.addRow("Layers on the GPU", self.gpu_layers)
        layout.addWidget(performance)

        self.mode_tabs = QTabWidget()
        self.mode_editors: dict[Mode, ModeEditor] = {}
        for mode in Mode:
            editor = ModeEditor(mode, settings.mode_overrides.get(mode.value, {}))
            self.mode_editors[mode] = editor
            self.mode_tabs.addTab(editor, mode.label)
        layout.addWidget(self.mode_tabs)

        appearance = QGroupBox("Appearance")
        appearance_form = QFormLayout(appearance)
        self.theme = QComboBox()
        self.theme.setAccessibleName("Theme")
        for theme in THEMES:
            self.theme.addItem({"system": "Follow the system"}.get(theme, theme.capitalize()), theme)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        appearance_form.addRow("Theme", self.theme)
        layout.addWidget(appearance)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._restore_defaults
        )
        layout.addWidget(buttons)

    def _restore_defaults(self) -> None:
        defaults = Settings()
        self.threads.setValue(defaults.threads)
        self.context_size.setCurrentIndex(max(0, self.context_size.findData(defaults.context_size)))
        if self.gpu_layers is not None:
            self.gpu_layers.setValue(defaults.gpu_layers)
        for mode, editor in self.mode_editors.items():
            preset = preset_for(mode)
            editor.temperature.setValue(preset.sampling.temperature)
            editor.top_p.setValue(preset.sampling.top_p)
            editor.max_tokens.setValue(preset.sampling.max_tokens)
            editor.system_prompt.setPlainText(preset.system_prompt)
        self.theme.setCurrentIndex(max(0, self.theme.findData(defaults.theme)))

    def result_settings(self) -> Settings:
        """The settings as edited; fields the dialog does not show are carried over unchanged."""
        updated = copy.deepcopy(self._original)
        updated.threads = self.threads.value()
        updated.context_size = int(self.context_size.currentData())
        if self.gpu_layers is not None:
            updated.gpu_layers = self.gpu_layers.value()
        updated.mode_overrides = {
            mode.value: overrides
            for mode, editor in self.mode_editors.items()
            if (overrides := editor.overrides())
        }
        updated.theme = str(self.theme.currentData())
        return updated
