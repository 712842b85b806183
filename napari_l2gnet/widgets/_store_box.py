"""The Fine-tune panel's "Earlier corrections" box: the annotation store's cases.

The store (``scan_io.annotation_store``) keeps every scan whose corrections were accepted;
a run includes them by default ("Include earlier corrections (N scans)"), Accept saves this
scan's corrections there ("Save these corrections ..."), and a case can be removed (after a
question: it is the user's work). Cases that cannot be used are listed with the reason.
"""

from __future__ import annotations

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from scan_io.annotation_store import AnnotationStore

from ._tooltips import Finetune as tips

ROLE_CASE = 256  # Qt.ItemDataRole.UserRole: the case id of a list item


class StoreBox(QGroupBox):
    """Include / save tick boxes, the list of stored cases, Remove."""

    def __init__(self, parent=None) -> None:
        super().__init__("Earlier corrections (annotation store)", parent)
        self.include_check = QCheckBox()
        self.include_check.setChecked(True)
        self.include_check.setToolTip(tips.STORE_INCLUDE)
        self.save_check = QCheckBox("Save these corrections to the store on Accept")
        self.save_check.setChecked(True)
        self.save_check.setToolTip(tips.STORE_SAVE)
        self.list = QListWidget()
        self.list.setMaximumHeight(90)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip(tips.STORE_REMOVE)
        self.remove_button.clicked.connect(lambda: self.remove_selected())
        self.folder_label = QLabel()
        self.folder_label.setWordWrap(True)
        self.folder_label.setStyleSheet("color: gray")
        col = QVBoxLayout(self)
        col.addWidget(self.include_check)
        col.addWidget(self.save_check)
        col.addWidget(self.list)
        col.addWidget(self.remove_button)
        col.addWidget(self.folder_label)
        self.notes: list[str] = []
        self.refresh()

    @property
    def store(self) -> AnnotationStore:
        """The user's store (``$L2GNET_ANNOTATION_STORE`` or the user data folder)."""
        return AnnotationStore()

    @property
    def include(self) -> bool:
        return self.include_check.isChecked() and self.include_check.isEnabled()

    def case_ids(self) -> list[str]:
        return [self.list.item(i).data(ROLE_CASE) for i in range(self.list.count())]

    def refresh(self) -> None:
        """Re-read the store: the list, the count in the tick box, the notes."""
        store = self.store
        cases, self.notes = store.read()
        self.list.clear()
        usable = 0
        for case in cases:
            problem = store.problem(case)
            item = QListWidgetItem(case.describe() + (" — unusable" if problem else ""))
            item.setData(ROLE_CASE, case.case_id)
            item.setToolTip("\n".join(filter(None, [
                problem, f"Source: {case.source or '(an array without a file)'}",
                f"Slices (axis {case.slice_axis}): "
                + ", ".join(map(str, case.corrected_slices)),
                f"Classes: {', '.join(case.class_names[1:])}"])))
            if problem:
                item.setForeground(QColor("#e05d5d"))
            else:
                usable += 1
            self.list.addItem(item)
        self.include_check.setText(f"Include earlier corrections ({usable} scan"
                                   f"{'s' * (usable != 1)})")
        self.include_check.setEnabled(usable > 0)
        self.list.setVisible(bool(cases))
        self.remove_button.setVisible(bool(cases))
        if not cases:
            self.notes = ["No earlier corrections yet: Accept saves this scan's here.",
                          *self.notes]
        self.folder_label.setText(f"Store: {store.root}"
                                  + "".join(f"\n{note}" for note in self.notes))

    def remove_selected(self, confirmed: bool | None = None) -> bool:
        item = self.list.currentItem()
        return item is not None and self.remove(item.data(ROLE_CASE), confirmed)

    def remove(self, case_id: str, confirmed: bool | None = None) -> bool:
        """Delete ``case_id`` from the store; ``confirmed`` None asks the user first."""
        if confirmed is None:
            answer = QMessageBox.question(
                self, "Remove a stored case",
                f"Delete {case_id} (its scan, labels and record) from the annotation store? "
                "Later fine-tunes will no longer learn from it.")
            confirmed = answer == QMessageBox.StandardButton.Yes
        if not confirmed:
            return False
        try:
            self.store.remove(case_id)
        except (KeyError, OSError) as err:
            self.folder_label.setText(str(err))
            return False
        self.refresh()
        return True
