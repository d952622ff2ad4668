"""Admin behaviour shared by the apps' ModelAdmin classes."""


class OwnerFixedMixin:
    """Make a row's owner read-only once the row exists.

    Other rows point at an owned row and keep their own owner, so moving one
    row to another subscriber would mix two subscribers' data. New rows
    still choose their owner.
    """

    owner_field = "owner"

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly.append(self.owner_field)
        return readonly
