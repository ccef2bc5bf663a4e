"""Operations layer: playbooks, Azure reads and notifications for running the stamps."""
