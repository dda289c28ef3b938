from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_ACCEPTED: _ClassVar[TaskState]
    TASK_STATE_SUBMITTED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCESS: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]

class CancelOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANCEL_OUTCOME_UNSPECIFIED: _ClassVar[CancelOutcome]
    CANCEL_OUTCOME_CANCELLED: _ClassVar[CancelOutcome]
    CANCEL_OUTCOME_ALREADY_FINISHED: _ClassVar[CancelOutcome]
    CANCEL_OUTCOME_RUNNING_CANNOT_STOP: _ClassVar[CancelOutcome]
    CANCEL_OUTCOME_UNKNOWN: _ClassVar[CancelOutcome]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_ACCEPTED: TaskState
TASK_STATE_SUBMITTED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCESS: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
CANCEL_OUTCOME_UNSPECIFIED: CancelOutcome
CANCEL_OUTCOME_CANCELLED: CancelOutcome
CANCEL_OUTCOME_ALREADY_FINISHED: CancelOutcome
CANCEL_OUTCOME_RUNNING_CANNOT_STOP: CancelOutcome
CANCEL_OUTCOME_UNKNOWN: CancelOutcome

class RegisterFunctionRequest(_message.Message):
    __slots__ = ("function_name", "function_code", "description", "metadata_json")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_CODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    function_code: str
    description: str
    metadata_json: str
    def __init__(self, function_name: _Optional[str] = ..., function_code: _Optional[str] = ..., description: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class RegisterFunctionResponse(_message.Message):
    __slots__ = ("function_id",)
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    def __init__(self, function_id: _Optional[str] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("function_id", "payload")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    payload: str
    def __init__(self, function_id: _Optional[str] = ..., payload: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("task_group_id", "endpoint_id", "tasks", "submit_id", "result_serializers", "user_endpoint_config_json", "resource_specification_json", "user_runtime_json", "label")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_SERIALIZERS_FIELD_NUMBER: _ClassVar[int]
    USER_ENDPOINT_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_SPECIFICATION_JSON_FIELD_NUMBER: _ClassVar[int]
    USER_RUNTIME_JSON_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    endpoint_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSpec]
    submit_id: str
    result_serializers: _containers.RepeatedScalarFieldContainer[str]
    user_endpoint_config_json: str
    resource_specification_json: str
    user_runtime_json: str
    label: str
    def __init__(self, task_group_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskSpec, _Mapping]]] = ..., submit_id: _Optional[str] = ..., result_serializers: _Optional[_Iterable[str]] = ..., user_endpoint_config_json: _Optional[str] = ..., resource_specification_json: _Optional[str] = ..., user_runtime_json: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("task_group_id", "task_ids")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_group_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "state", "data", "error_code", "error_message", "exception", "upstream_task_id", "completed_at", "seq")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    data: str
    error_code: str
    error_message: str
    exception: str
    upstream_task_id: str
    completed_at: float
    seq: int
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., data: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., exception: _Optional[str] = ..., upstream_task_id: _Optional[str] = ..., completed_at: _Optional[float] = ..., seq: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("task_group_id", "after_seq")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    after_seq: int
    def __init__(self, task_group_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("events", "replay_done")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_DONE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    replay_done: bool
    def __init__(self, events: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ..., replay_done: _Optional[bool] = ...) -> None: ...

class GetTaskGroupRequest(_message.Message):
    __slots__ = ("task_group_id",)
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    def __init__(self, task_group_id: _Optional[str] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task_id", "state", "upstream_task_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    upstream_task_id: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., upstream_task_id: _Optional[str] = ...) -> None: ...

class GetTaskGroupResponse(_message.Message):
    __slots__ = ("task_group_id", "endpoint_id", "tasks", "upstream_task_group_id")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    endpoint_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    upstream_task_group_id: str
    def __init__(self, task_group_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., upstream_task_group_id: _Optional[str] = ...) -> None: ...

class GetTasksRequest(_message.Message):
    __slots__ = ("task_ids", "omit_unknown")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    OMIT_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    omit_unknown: bool
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., omit_unknown: _Optional[bool] = ...) -> None: ...

class GetTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_ids", "not_started_only")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    NOT_STARTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    not_started_only: bool
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., not_started_only: _Optional[bool] = ...) -> None: ...

class TaskCancel(_message.Message):
    __slots__ = ("task_id", "outcome", "message", "was_running")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WAS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    outcome: CancelOutcome
    message: str
    was_running: bool
    def __init__(self, task_id: _Optional[str] = ..., outcome: _Optional[_Union[CancelOutcome, str]] = ..., message: _Optional[str] = ..., was_running: _Optional[bool] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled_task_ids", "outcomes")
    CANCELLED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    cancelled_task_ids: _containers.RepeatedScalarFieldContainer[str]
    outcomes: _containers.RepeatedCompositeFieldContainer[TaskCancel]
    def __init__(self, cancelled_task_ids: _Optional[_Iterable[str]] = ..., outcomes: _Optional[_Iterable[_Union[TaskCancel, _Mapping]]] = ...) -> None: ...

class ReleaseGroupRequest(_message.Message):
    __slots__ = ("task_group_id", "cancel_unfinished")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    cancel_unfinished: bool
    def __init__(self, task_group_id: _Optional[str] = ..., cancel_unfinished: _Optional[bool] = ...) -> None: ...

class ReleaseGroupResponse(_message.Message):
    __slots__ = ("tasks_released", "tasks_cancelled")
    TASKS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    TASKS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    tasks_released: int
    tasks_cancelled: int
    def __init__(self, tasks_released: _Optional[int] = ..., tasks_cancelled: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    count: int
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "uptime_s", "task_groups", "tasks", "upstreams", "quarantined_messages", "local_endpoint_id", "max_payload_bytes", "upstream_status", "watchers")
    class UpstreamStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUPS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAMS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_STATUS_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_s: float
    task_groups: int
    tasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    upstreams: _containers.RepeatedScalarFieldContainer[str]
    quarantined_messages: int
    local_endpoint_id: str
    max_payload_bytes: int
    upstream_status: _containers.ScalarMap[str, str]
    watchers: int
    def __init__(self, version: _Optional[str] = ..., uptime_s: _Optional[float] = ..., task_groups: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., upstreams: _Optional[_Iterable[str]] = ..., quarantined_messages: _Optional[int] = ..., local_endpoint_id: _Optional[str] = ..., max_payload_bytes: _Optional[int] = ..., upstream_status: _Optional[_Mapping[str, str]] = ..., watchers: _Optional[int] = ...) -> None: ...

class DescribeEndpointRequest(_message.Message):
    __slots__ = ("endpoint_id", "metadata")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    metadata: bool
    def __init__(self, endpoint_id: _Optional[str] = ..., metadata: _Optional[bool] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: str
    def __init__(self, role: _Optional[str] = ...) -> None: ...

class DescribeFunctionRequest(_message.Message):
    __slots__ = ("function_id",)
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    def __init__(self, function_id: _Optional[str] = ...) -> None: ...

class JsonDocument(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ListTaskGroupsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "task_group_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    task_group_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., task_group_id: _Optional[str] = ...) -> None: ...

class TaskGroupSummary(_message.Message):
    __slots__ = ("task_group_id", "endpoint_id", "upstream", "label", "tasks", "created_at", "updated_at", "upstream_task_group_id", "last_seq")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    endpoint_id: str
    upstream: str
    label: str
    tasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    created_at: float
    updated_at: float
    upstream_task_group_id: str
    last_seq: int
    def __init__(self, task_group_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., upstream: _Optional[str] = ..., label: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., upstream_task_group_id: _Optional[str] = ..., last_seq: _Optional[int] = ...) -> None: ...

class ListTaskGroupsResponse(_message.Message):
    __slots__ = ("task_groups", "next_page_token")
    TASK_GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_groups: _containers.RepeatedCompositeFieldContainer[TaskGroupSummary]
    next_page_token: str
    def __init__(self, task_groups: _Optional[_Iterable[_Union[TaskGroupSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("task_group_id", "state", "page_size", "page_token")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    state: TaskState
    page_size: int
    page_token: str
    def __init__(self, task_group_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task_id", "state", "upstream_task_id", "created_at", "completed_at", "error_code", "error_message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    upstream_task_id: str
    created_at: float
    completed_at: float
    error_code: str
    error_message: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., upstream_task_id: _Optional[str] = ..., created_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("task_group_id", "tasks", "next_page_token")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    next_page_token: str
    def __init__(self, task_group_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CollectGarbageRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class CollectGarbageResponse(_message.Message):
    __slots__ = ("task_group_ids", "tasks_released", "cutoff", "dry_run")
    TASK_GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    TASKS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    task_group_ids: _containers.RepeatedScalarFieldContainer[str]
    tasks_released: int
    cutoff: float
    dry_run: bool
    def __init__(self, task_group_ids: _Optional[_Iterable[str]] = ..., tasks_released: _Optional[int] = ..., cutoff: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...
